package validation

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
	"github.com/nodewright/nodewright/test/fixtures"
)

// TestSeedFixturesApplyUnchangedAndReadBackWithoutLoss applies the manifests
// users bring, as they are, and checks every field they set is stored with its
// value, and survives a decode into nodewright's Go types and back (a lossy Go
// type would drop fields on every controller update).
func TestSeedFixturesApplyUnchangedAndReadBackWithoutLoss(t *testing.T) {
	ns := cp.Namespace(t)
	typed := map[string]func() any{
		"NodePool":     func() any { return &v1.NodePool{} },
		"EC2NodeClass": func() any { return &awsv1.EC2NodeClass{} },
	}
	for _, name := range []string{fixtures.NodePoolBatch, fixtures.EC2NodeClassDefault, fixtures.BatchJob} {
		t.Run(name, func(t *testing.T) {
			objects, err := fixtures.SeedObjects(name)
			if err != nil {
				t.Fatal(err)
			}
			for _, obj := range objects {
				want := normalize(t, obj.Object)
				if obj.GetKind() == "Job" {
					obj.SetNamespace(ns)
				} else {
					// Cluster-scoped: the fixture's name, cleaned up after the test.
					t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), obj.DeepCopy()) })
				}
				if err := cp.Client.Create(context.Background(), obj); err != nil {
					t.Fatalf("applying %s %s unchanged: %v", obj.GetKind(), obj.GetName(), err)
				}
				stored := &unstructured.Unstructured{}
				stored.SetGroupVersionKind(obj.GroupVersionKind())
				if err := cp.Client.Get(context.Background(), clientKey(obj), stored); err != nil {
					t.Fatalf("reading back: %v", err)
				}
				delete(want["metadata"].(map[string]any), "namespace")
				if missing := lost(want, normalize(t, stored.Object), ""); len(missing) > 0 {
					t.Errorf("stored %s lost or changed fields: %v", obj.GetKind(), missing)
				}
				newTyped, ok := typed[obj.GetKind()]
				if !ok {
					continue
				}
				goValue := newTyped()
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(stored.Object, goValue); err != nil {
					t.Fatalf("decoding into the Go type: %v", err)
				}
				if missing := lost(want, normalize(t, goValue), ""); len(missing) > 0 {
					t.Errorf("%s through the Go type lost or changed fields: %v", obj.GetKind(), missing)
				}
			}
		})
	}
}

// normalize turns any value into the plain JSON form (maps, slices, float64).
func normalize(t *testing.T, v any) map[string]any {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(data, &out); err != nil {
		t.Fatalf("decoding: %v", err)
	}
	return out
}

// lost lists the paths of want whose value is absent or different in got. Fields
// got has in addition (defaults, status, metadata) are fine.
func lost(want, got any, path string) []string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an object, got %v", path, got)}
		}
		var out []string
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				out = append(out, path+"."+k+": missing")
				continue
			}
			out = append(out, lost(wv, gv, path+"."+k)...)
		}
		sort.Strings(out)
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: want %v, got %v", path, w, got)}
		}
		var out []string
		for i := range w {
			out = append(out, lost(w[i], g[i], fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	default:
		if !reflect.DeepEqual(want, got) {
			return []string{fmt.Sprintf("%s: want %v, got %v", path, want, got)}
		}
		return nil
	}
}
