package validation

import (
	"context"
	"reflect"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestPrinterColumns checks what `kubectl get` shows for each resource, the
// columns Karpenter users read in their terminals and dashboards.
func TestPrinterColumns(t *testing.T) {
	ctx := context.Background()
	for _, obj := range []string{validNodePool, validNodeClaim, validEC2NodeClass} {
		u := object(t, obj)
		if err := cp.Client.Create(ctx, u); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cp.Client.Delete(context.Background(), u) })
	}
	for _, tc := range []struct {
		gvr  schema.GroupVersionResource
		wide bool
		want []string
	}{
		{schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodepools"}, false,
			[]string{"Name", "NodeClass", "Nodes", "Ready", "Age", "Weight"}},
		{schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodepools"}, true,
			[]string{"Name", "NodeClass", "Nodes", "Ready", "Age", "Weight", "CPU", "Memory"}},
		{schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}, false,
			[]string{"Name", "Type", "Capacity", "Zone", "Node", "Ready", "Age"}},
		{schema.GroupVersionResource{Group: "karpenter.sh", Version: "v1", Resource: "nodeclaims"}, true,
			[]string{"Name", "Type", "Capacity", "Zone", "Node", "Ready", "Age", "ImageID", "ID", "NodePool", "NodeClass", "Drifted"}},
		{schema.GroupVersionResource{Group: "karpenter.k8s.aws", Version: "v1", Resource: "ec2nodeclasses"}, false,
			[]string{"Name", "Ready", "Age"}},
	} {
		table, err := cp.GetTable(ctx, tc.gvr, "", tc.wide)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(table.Columns, tc.want) {
			t.Errorf("%s (wide=%v) columns = %v, want %v", tc.gvr.Resource, tc.wide, table.Columns, tc.want)
		}
		if len(table.Rows) == 0 {
			t.Errorf("%s table has no rows", tc.gvr.Resource)
		}
	}
}
