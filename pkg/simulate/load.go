// Package simulate is `nodewright simulate`: a dry run of provisioning from
// YAML files alone. It reads NodePools, EC2NodeClasses and workloads (Pods,
// Deployments, ReplicaSets, StatefulSets, Jobs), expands the workloads into
// the pods they would create, plans with the solver over the embedded
// catalog, and reports what nodewright would launch, what fits nowhere and
// why, and what it costs. No cluster and no AWS account are needed.
package simulate

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	v1 "github.com/nodewright/nodewright/apis/v1"
)

// Input is what the files held.
type Input struct {
	NodePools   []*v1.NodePool
	NodeClasses map[string]*awsv1.EC2NodeClass
	// Pods are the workloads expanded into pods, in file order, not bound
	// to a node.
	Pods []*corev1.Pod
	// Nodes are running nodes (kind Node) for a consolidation preview, and
	// Bound the pods whose spec.nodeName names one of them, by node name.
	Nodes []*corev1.Node
	Bound map[string][]*corev1.Pod
}

// document is one YAML document of a file and where it starts.
type document struct {
	file string
	line int // 1-based line of the document's first line
	data []byte
}

// split cuts a multi-document YAML file at its "---" lines.
func split(file string, data []byte) []document {
	var docs []document
	var cur bytes.Buffer
	start, line := 1, 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	flush := func(next int) {
		if strings.TrimSpace(cur.String()) != "" {
			docs = append(docs, document{file, start, append([]byte(nil), cur.Bytes()...)})
		}
		cur.Reset()
		start = next
	}
	for sc.Scan() {
		line++
		text := sc.Text()
		if strings.HasPrefix(text, "---") && strings.TrimSpace(strings.TrimPrefix(text, "---")) == "" {
			flush(line + 1)
			continue
		}
		cur.WriteString(text + "\n")
	}
	flush(line + 1)
	return docs
}

// yamlLine finds "line N" in a YAML parser's message.
var yamlLine = regexp.MustCompile(`line (\d+)`)

// unknownField finds the field strict decoding refused.
var unknownField = regexp.MustCompile(`unknown field "([^"]+)"`)

// errorf names the file and line of a document's error; a line the YAML
// parser reports is made absolute.
func (d document) errorf(err error, format string, args ...any) error {
	line := d.line
	msg := err.Error()
	if m := unknownField.FindStringSubmatch(msg); m != nil {
		// Point at the misspelt field itself.
		for i, l := range strings.Split(string(d.data), "\n") {
			if strings.HasPrefix(strings.TrimLeft(strings.TrimSpace(l), "- "), m[1]+":") {
				line = d.line + i
				break
			}
		}
	} else if m := yamlLine.FindStringSubmatch(msg); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil {
			line = d.line + n - 1
			msg = strings.Replace(msg, m[0], "line "+strconv.Itoa(line), 1)
		}
	}
	return fmt.Errorf("%s:%d: %s: %s", d.file, line, fmt.Sprintf(format, args...), msg)
}

// Load reads every file and expands the workloads. Each error names its
// file and line; every bad document is reported, not just the first.
func Load(files map[string][]byte, order []string) (*Input, []error) {
	in := &Input{NodeClasses: map[string]*awsv1.EC2NodeClass{}, Bound: map[string][]*corev1.Pod{}}
	var errs []error
	for _, name := range order {
		for _, d := range split(name, files[name]) {
			var meta metav1.TypeMeta
			if err := yaml.Unmarshal(d.data, &meta); err != nil {
				errs = append(errs, d.errorf(err, "not YAML"))
				continue
			}
			if err := in.add(d, meta); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(in.NodePools) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("no NodePool (karpenter.sh/v1) in %s: nothing to provision from", strings.Join(order, ", ")))
	}
	return in, errs
}

// add decodes one document by its kind, strictly: a misspelt field is an
// error, not silently ignored.
func (in *Input) add(d document, meta metav1.TypeMeta) error {
	decode := func(obj any) error {
		if err := yaml.UnmarshalStrict(d.data, obj); err != nil {
			return d.errorf(err, "%s", meta.Kind)
		}
		return nil
	}
	switch {
	case meta.Kind == "NodePool" && meta.APIVersion == v1.SchemeGroupVersion.String():
		np := &v1.NodePool{}
		if err := decode(np); err != nil {
			return err
		}
		if err := np.DurationErrors(); err != nil {
			return d.errorf(err, "NodePool %s", np.Name)
		}
		in.NodePools = append(in.NodePools, np)
	case meta.Kind == "EC2NodeClass" && meta.APIVersion == awsv1.SchemeGroupVersion.String():
		nc := &awsv1.EC2NodeClass{}
		if err := decode(nc); err != nil {
			return err
		}
		in.NodeClasses[nc.Name] = nc
	case meta.Kind == "Pod" && meta.APIVersion == "v1":
		p := &corev1.Pod{}
		if err := decode(p); err != nil {
			return err
		}
		if p.Spec.NodeName != "" {
			if p.Namespace == "" {
				p.Namespace = "default"
			}
			in.Bound[p.Spec.NodeName] = append(in.Bound[p.Spec.NodeName], p)
			return nil
		}
		return in.expand(d, "Pod", "pods", p.ObjectMeta, p.Spec, 1)
	case meta.Kind == "Node" && meta.APIVersion == "v1":
		n := &corev1.Node{}
		if err := decode(n); err != nil {
			return err
		}
		for _, key := range []string{corev1.LabelInstanceTypeStable, corev1.LabelTopologyZone, v1.CapacityTypeLabelKey} {
			if n.Labels[key] == "" {
				return d.errorf(fmt.Errorf("metadata.labels needs %s to price the node", key), "Node %s", n.Name)
			}
		}
		in.Nodes = append(in.Nodes, n)
	case meta.Kind == "Deployment" && meta.APIVersion == "apps/v1":
		o := &appsv1.Deployment{}
		if err := decode(o); err != nil {
			return err
		}
		return in.expand(d, meta.Kind, "spec.replicas", o.ObjectMeta, o.Spec.Template.Spec, replicas(o.Spec.Replicas, 1), o.Spec.Template.ObjectMeta)
	case meta.Kind == "ReplicaSet" && meta.APIVersion == "apps/v1":
		o := &appsv1.ReplicaSet{}
		if err := decode(o); err != nil {
			return err
		}
		return in.expand(d, meta.Kind, "spec.replicas", o.ObjectMeta, o.Spec.Template.Spec, replicas(o.Spec.Replicas, 1), o.Spec.Template.ObjectMeta)
	case meta.Kind == "StatefulSet" && meta.APIVersion == "apps/v1":
		o := &appsv1.StatefulSet{}
		if err := decode(o); err != nil {
			return err
		}
		return in.expand(d, meta.Kind, "spec.replicas", o.ObjectMeta, o.Spec.Template.Spec, replicas(o.Spec.Replicas, 1), o.Spec.Template.ObjectMeta)
	case meta.Kind == "Job" && meta.APIVersion == "batch/v1":
		o := &batchv1.Job{}
		if err := decode(o); err != nil {
			return err
		}
		// A Job runs parallelism pods at once (never more than its
		// completions): that is the capacity it asks for.
		n, field := replicas(o.Spec.Parallelism, 1), "spec.parallelism"
		if o.Spec.Completions != nil && *o.Spec.Completions < n {
			n, field = *o.Spec.Completions, "spec.completions"
		}
		return in.expand(d, meta.Kind, field, o.ObjectMeta, o.Spec.Template.Spec, n, o.Spec.Template.ObjectMeta)
	case meta.Kind == "" || meta.APIVersion == "":
		return d.errorf(fmt.Errorf("apiVersion and kind are required"), "document")
	default:
		return d.errorf(fmt.Errorf("not a NodePool, EC2NodeClass, Node, Pod, Deployment, ReplicaSet, StatefulSet or Job"), "%s %s", meta.APIVersion, meta.Kind)
	}
	return nil
}

func replicas(n *int32, def int32) int32 {
	if n == nil {
		return def
	}
	return *n
}

// MaxPods bounds the pods a simulation expands its workloads into: more
// than any one plan is worth computing, and a typo such as replicas:
// 2000000000 would otherwise take all memory.
const MaxPods = 100_000

// expand adds n pods of a workload, named after it; field names n's source
// for errors. A negative count, or one past MaxPods in all, is an error.
func (in *Input) expand(d document, kind, field string, owner metav1.ObjectMeta, spec corev1.PodSpec, n int32, template ...metav1.ObjectMeta) error {
	if n < 0 {
		return d.errorf(fmt.Errorf("%s: %d is negative", field, n), "%s %s", kind, owner.Name)
	}
	if len(in.Pods)+int(n) > MaxPods {
		return d.errorf(fmt.Errorf("%s: %d pods, with the %d before, are more than simulate plans (%d)", field, n, len(in.Pods), MaxPods),
			"%s %s", kind, owner.Name)
	}
	labels := owner.Labels
	if len(template) > 0 {
		labels = template[0].Labels
	}
	ns := owner.Namespace
	if ns == "" {
		ns = "default"
	}
	for i := range n {
		name := owner.Name
		if n > 1 || len(template) > 0 {
			name = fmt.Sprintf("%s-%d", owner.Name, i)
		}
		in.Pods = append(in.Pods, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, UID: types.UID(ns + "/" + name)},
			Spec:       *spec.DeepCopy(),
		})
	}
	return nil
}
