package harness

import (
	"context"
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
)

// Table is what `kubectl get` shows for a resource: the apiserver renders it
// from the CRD's printer columns.
type Table struct {
	Columns []string
	Rows    [][]string
}

// GetTable asks the apiserver for the server-side table of a resource, with
// wide columns (priority > 0) when wide is set, as `kubectl get -o wide` does.
func (c *ControlPlane) GetTable(ctx context.Context, gvr schema.GroupVersionResource, namespace string, wide bool) (Table, error) {
	cfg := rest.CopyConfig(c.Config)
	cfg.GroupVersion = &schema.GroupVersion{Group: gvr.Group, Version: gvr.Version}
	cfg.APIPath = "/apis"
	if gvr.Group == "" {
		cfg.APIPath = "/api"
	}
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(c.Scheme).WithoutConversion()
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return Table{}, fmt.Errorf("creating REST client: %w", err)
	}
	req := rc.Get().Resource(gvr.Resource).SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	if namespace != "" {
		req = req.Namespace(namespace)
	}
	raw, err := req.DoRaw(ctx)
	if err != nil {
		return Table{}, fmt.Errorf("getting %s table: %w", gvr.Resource, err)
	}
	var table metav1.Table
	if err := json.Unmarshal(raw, &table); err != nil {
		return Table{}, fmt.Errorf("decoding %s table: %w", gvr.Resource, err)
	}
	var out Table
	var keep []int
	for i, col := range table.ColumnDefinitions {
		if col.Priority == 0 || wide {
			keep = append(keep, i)
			out.Columns = append(out.Columns, col.Name)
		}
	}
	for _, row := range table.Rows {
		cells := make([]string, 0, len(keep))
		for _, i := range keep {
			cell := ""
			if i < len(row.Cells) && row.Cells[i] != nil {
				cell = fmt.Sprint(row.Cells[i])
			}
			cells = append(cells, cell)
		}
		out.Rows = append(out.Rows, cells)
	}
	return out, nil
}
