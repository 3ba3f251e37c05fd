package aws

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/textproto"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// mimeBoundary separates the parts of the user data nodewright writes. It is
// fixed so that the same inputs give byte-identical user data, and so the
// same launch template name.
const mimeBoundary = "//nodewright//"

// Content types cloud-init and nodeadm read from a MIME multipart user data.
const (
	contentTypeNodeConfig = "application/node.eks.aws"
	contentTypeShell      = "text/x-shellscript"
	contentTypeCloudCfg   = "text/cloud-config"
)

// nodeConfig is nodeadm's NodeConfig (node.eks.aws/v1alpha1), the parts of it
// nodewright sets.
type nodeConfig struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Spec       nodeConfigSpec `json:"spec"`
}

type nodeConfigSpec struct {
	Cluster struct {
		Name                 string `json:"name"`
		APIServerEndpoint    string `json:"apiServerEndpoint"`
		CertificateAuthority string `json:"certificateAuthority"`
		CIDR                 string `json:"cidr"`
	} `json:"cluster"`
	Kubelet struct {
		Config awsv1.KubeletConfiguration `json:"config,omitempty"`
		Flags  []string                   `json:"flags,omitempty"`
	} `json:"kubelet"`
	// Instance is set only for instanceStorePolicy RAID0.
	Instance *nodeConfigInstance `json:"instance,omitempty"`
}

// nodeConfigInstance is nodeadm's spec.instance: localStorage.strategy RAID0
// makes nodeadm build the instance store NVMe disks into one array and
// mount the kubelet's and containerd's directories on it.
type nodeConfigInstance struct {
	LocalStorage struct {
		Strategy string `json:"strategy"`
	} `json:"localStorage"`
}

// bootstrap is what a node needs to join as the node it was launched as.
type bootstrap struct {
	Labels map[string]string
	Taints []corev1.Taint
	// Kubelet is the node class's spec.kubelet, passed to the kubelet as
	// configuration (nodeadm merges it over its defaults).
	Kubelet awsv1.KubeletConfiguration
	// UserData is the node class's spec.userData, merged in.
	UserData string
	// InstanceStoreRAID0 is spec.instanceStorePolicy RAID0: the instance
	// store becomes the kubelet's and containerd's disk, the ephemeral
	// storage NodeSettings counts on (see InstanceStoreEphemeral).
	InstanceStoreRAID0 bool
}

// al2023UserData writes MIME multipart user data for nodeadm: the user's own
// parts first, then nodewright's NodeConfig, which nodeadm merges over them,
// so the cluster, labels and taints are always the ones nodewright needs.
func al2023UserData(o Options, b bootstrap) (string, error) {
	nc := nodeConfig{APIVersion: "node.eks.aws/v1alpha1", Kind: "NodeConfig"}
	nc.Spec.Cluster.Name = o.ClusterName
	nc.Spec.Cluster.APIServerEndpoint = o.ClusterEndpoint
	nc.Spec.Cluster.CertificateAuthority = o.ClusterCABundle
	nc.Spec.Cluster.CIDR = o.ClusterCIDR
	nc.Spec.Kubelet.Config = b.Kubelet
	if len(b.Labels) > 0 {
		nc.Spec.Kubelet.Flags = append(nc.Spec.Kubelet.Flags, "--node-labels="+formatLabels(b.Labels))
	}
	if len(b.Taints) > 0 {
		nc.Spec.Kubelet.Flags = append(nc.Spec.Kubelet.Flags, "--register-with-taints="+formatTaints(b.Taints))
	}
	if b.InstanceStoreRAID0 {
		nc.Spec.Instance = &nodeConfigInstance{}
		nc.Spec.Instance.LocalStorage.Strategy = "RAID0"
	}
	ours, err := yaml.Marshal(nc)
	if err != nil {
		return "", fmt.Errorf("writing NodeConfig: %w", err)
	}
	parts, err := userParts(b.UserData, contentTypeNodeConfig)
	if err != nil {
		return "", fmt.Errorf("reading spec.userData: %w", err)
	}
	return mimeUserData(append(parts, typedPart(contentTypeNodeConfig, ours)))
}

// mimeUserData writes parts as one MIME multipart document, in order (the
// order cloud-init runs scripts in).
func mimeUserData(parts []userDataPart) (string, error) {
	boundary := boundaryFor(parts)

	var buf bytes.Buffer
	buf.WriteString("MIME-Version: 1.0\r\n")
	fmt.Fprintf(&buf, "Content-Type: multipart/mixed; boundary=%q\r\n\r\n", boundary)
	w := multipart.NewWriter(&buf)
	if err := w.SetBoundary(boundary); err != nil {
		return "", err
	}
	for _, p := range parts {
		pw, err := w.CreatePart(p.header)
		if err != nil {
			return "", err
		}
		if _, err := pw.Write(p.body); err != nil {
			return "", err
		}
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// userDataPart is one part of MIME user data: its headers (a user's part
// keeps all of its own, Content-Transfer-Encoding and Content-Disposition
// included, or cloud-init would misread it) and its body.
type userDataPart struct {
	header textproto.MIMEHeader
	body   []byte
}

func typedPart(contentType string, body []byte) userDataPart {
	return userDataPart{textproto.MIMEHeader{"Content-Type": {contentType}}, body}
}

// boundaryFor is mimeBoundary, unless a part's body holds a line that would
// end the part early; then the first of //nodewright-1//, -2// ... that none
// holds. Deterministic, so the same inputs still give the same user data.
func boundaryFor(parts []userDataPart) string {
	collides := func(b string) bool {
		return slices.ContainsFunc(parts, func(p userDataPart) bool { return bytes.Contains(p.body, []byte("--"+b)) })
	}
	b := mimeBoundary
	for i := 1; collides(b); i++ {
		b = fmt.Sprintf("//nodewright-%d//", i)
	}
	return b
}

// userParts splits the user's user data into parts: a MIME multipart
// document part by part, anything else as one part typed by its first line
// (a shell script, cloud-config, else the family's own format, orType: a
// NodeConfig for AL2023, a shell script for AL2).
func userParts(userData, orType string) ([]userDataPart, error) {
	if strings.TrimSpace(userData) == "" {
		return nil, nil
	}
	if strings.HasPrefix(userData, "MIME-Version:") || strings.HasPrefix(userData, "Content-Type: multipart") {
		return mimeParts(userData)
	}
	contentType := orType
	switch first := strings.TrimSpace(strings.SplitN(userData, "\n", 2)[0]); {
	case strings.HasPrefix(first, "#!"):
		contentType = contentTypeShell
	case strings.HasPrefix(first, "#cloud-config"):
		contentType = contentTypeCloudCfg
	}
	return []userDataPart{typedPart(contentType, []byte(userData))}, nil
}

func mimeParts(userData string) ([]userDataPart, error) {
	header, body, ok := strings.Cut(strings.ReplaceAll(userData, "\r\n", "\n"), "\n\n")
	if !ok {
		return nil, fmt.Errorf("MIME user data has no body")
	}
	var boundary string
	for _, line := range strings.Split(header, "\n") {
		name, value, _ := strings.Cut(line, ":")
		if strings.EqualFold(strings.TrimSpace(name), "Content-Type") {
			mediaType, params, err := mime.ParseMediaType(strings.TrimSpace(value))
			if err != nil || !strings.HasPrefix(mediaType, "multipart/") || params["boundary"] == "" {
				return nil, fmt.Errorf("MIME user data: Content-Type %q is not multipart with a boundary", strings.TrimSpace(value))
			}
			boundary = params["boundary"]
		}
	}
	if boundary == "" {
		return nil, fmt.Errorf("MIME user data has no Content-Type header")
	}
	r := multipart.NewReader(strings.NewReader(body), boundary)
	var parts []userDataPart
	for {
		p, err := r.NextPart()
		if err == io.EOF {
			return parts, nil
		}
		if err != nil {
			return nil, fmt.Errorf("MIME user data part %d: %w", len(parts)+1, err)
		}
		data, err := io.ReadAll(p)
		if err != nil {
			return nil, fmt.Errorf("MIME user data part %d: %w", len(parts)+1, err)
		}
		header := textproto.MIMEHeader(maps.Clone(p.Header))
		if header.Get("Content-Type") == "" {
			header.Set("Content-Type", "text/plain")
		}
		parts = append(parts, userDataPart{header, data})
	}
}

// formatLabels renders --node-labels: k=v pairs sorted by key.
func formatLabels(labels map[string]string) string {
	pairs := make([]string, 0, len(labels))
	for _, k := range sortedKeys(labels) {
		pairs = append(pairs, k+"="+labels[k])
	}
	return strings.Join(pairs, ",")
}

// formatTaints renders --register-with-taints: key[=value]:Effect, sorted.
func formatTaints(taints []corev1.Taint) string {
	out := make([]string, 0, len(taints))
	for _, t := range taints {
		s := t.Key
		if t.Value != "" {
			s += "=" + t.Value
		}
		out = append(out, s+":"+string(t.Effect))
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}
