package ec2sim

import (
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"net/mail"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// KubeletRegistration is what a node's user data asks its kubelet to register
// with beyond the well-known labels: extra labels, taints and a pod limit.
type KubeletRegistration struct {
	Labels map[string]string
	Taints []corev1.Taint
	// MaxPods is the kubelet's pod limit, nil when the user data leaves the
	// AMI's ENI-based default.
	MaxPods *int32
}

// ParseKubeletRegistration reads the user data (decoded) of an EKS node the
// way its bootstrap would: an AL2023 nodeadm NodeConfig (spec.kubelet.flags
// --node-labels/--register-with-taints/--max-pods, spec.kubelet.config
// registerWithTaints/maxPods) or an AL2 bootstrap.sh call with
// --kubelet-extra-args, alone or in a MIME multi-part archive, or
// Bottlerocket's TOML settings, as Karpenter writes them. Other parts (custom shell scripts) are ignored; a label or
// taint it cannot read is an error, as it would stop a real kubelet, and so
// is a bootstrap.sh call bootstrap.sh would exit on (see readBootstrapSh).
func ParseKubeletRegistration(userData string) (KubeletRegistration, error) {
	r := KubeletRegistration{Labels: map[string]string{}}
	return r, r.read(userData, 0)
}

func (r *KubeletRegistration) read(text string, depth int) error {
	trimmed := strings.TrimSpace(text)
	switch {
	case trimmed == "":
		return nil
	case depth > 3:
		return fmt.Errorf("user data: MIME parts nested too deep")
	case strings.HasPrefix(trimmed, "MIME-Version:") || strings.HasPrefix(trimmed, "Content-Type:"):
		return r.readMIME(trimmed, depth)
	case strings.HasPrefix(trimmed, "#!"):
		return r.readScript(trimmed)
	case strings.HasPrefix(trimmed, "<powershell>"):
		return r.readPowerShell(trimmed)
	}
	if ok, err := r.readBottlerocket(trimmed); ok || err != nil {
		return err
	}
	if ok, err := r.readNodeConfig(trimmed); ok || err != nil {
		return err
	}
	return r.readFlags(trimmed)
}

func (r *KubeletRegistration) readMIME(text string, depth int) error {
	// Writers use CRLF (Go's multipart.Writer does); the text may have been
	// trimmed of its last line break. One line ending throughout keeps the
	// closing boundary recognisable.
	text = strings.ReplaceAll(text, "\r\n", "\n")
	msg, err := mail.ReadMessage(strings.NewReader(text + "\n"))
	if err != nil {
		return fmt.Errorf("user data: reading MIME headers: %w", err)
	}
	mediaType, ps, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("user data: content type: %w", err)
	}
	if !strings.HasPrefix(mediaType, "multipart/") {
		body, err := io.ReadAll(msg.Body)
		if err != nil {
			return fmt.Errorf("user data: %w", err)
		}
		return r.readPart(mediaType, msg.Header.Get("Content-Transfer-Encoding"), string(body), depth)
	}
	parts := multipart.NewReader(msg.Body, ps["boundary"])
	for {
		part, err := parts.NextPart()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("user data: MIME part: %w", err)
		}
		body, err := io.ReadAll(part)
		if err != nil {
			return fmt.Errorf("user data: MIME part: %w", err)
		}
		partType, _, _ := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if strings.HasPrefix(partType, "multipart/") {
			nested := "Content-Type: " + part.Header.Get("Content-Type") + "\n\n" + string(body)
			if err := r.read(nested, depth+1); err != nil {
				return err
			}
			continue
		}
		if err := r.readPart(partType, part.Header.Get("Content-Transfer-Encoding"), string(body), depth); err != nil {
			return err
		}
	}
}

func (r *KubeletRegistration) readPart(mediaType, encoding, body string, depth int) error {
	if strings.EqualFold(encoding, "base64") {
		b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(body), ""))
		if err != nil {
			return fmt.Errorf("user data: base64 part: %w", err)
		}
		body = string(b)
	}
	switch mediaType {
	case "application/node.eks.aws":
		_, err := r.readNodeConfig(body)
		return err
	case "text/x-shellscript":
		return r.readScript(body)
	}
	return nil
}

// nodeConfig is the part of nodeadm's NodeConfig that changes registration.
type nodeConfig struct {
	Kind string `json:"kind"`
	Spec struct {
		Kubelet struct {
			Config struct {
				MaxPods            *int32         `json:"maxPods"`
				RegisterWithTaints []corev1.Taint `json:"registerWithTaints"`
			} `json:"config"`
			Flags []string `json:"flags"`
		} `json:"kubelet"`
	} `json:"spec"`
}

// readNodeConfig reads YAML documents; ok reports whether any was a NodeConfig.
func (r *KubeletRegistration) readNodeConfig(text string) (bool, error) {
	found := false
	for _, doc := range yamlDocuments.Split(text, -1) {
		var c nodeConfig
		if err := yaml.Unmarshal([]byte(doc), &c); err != nil || c.Kind != "NodeConfig" {
			continue
		}
		found = true
		if c.Spec.Kubelet.Config.MaxPods != nil {
			r.MaxPods = c.Spec.Kubelet.Config.MaxPods
		}
		r.Taints = append(r.Taints, c.Spec.Kubelet.Config.RegisterWithTaints...)
		for _, flag := range c.Spec.Kubelet.Flags {
			if err := r.readFlags(flag); err != nil {
				return true, err
			}
		}
	}
	return found, nil
}

var (
	yamlDocuments  = regexp.MustCompile(`(?m)^---\s*$`)
	nodeLabelsFlag = regexp.MustCompile(`--node-labels[= ]("[^"]*"|'[^']*'|[^\s'"]+)`)
	taintsFlag     = regexp.MustCompile(`--register-with-taints[= ]("[^"]*"|'[^']*'|[^\s'"]+)`)
	maxPodsFlag    = regexp.MustCompile(`--max-pods[= ]["']?(\d+)`)
)

// readFlags finds kubelet flags in a command line or script, as bootstrap.sh
// passes --kubelet-extra-args through to the kubelet.
func (r *KubeletRegistration) readFlags(text string) error {
	for _, m := range nodeLabelsFlag.FindAllStringSubmatch(text, -1) {
		for _, pair := range splitList(unquote(m[1])) {
			k, v, ok := strings.Cut(pair, "=")
			if !ok || k == "" {
				return fmt.Errorf("user data: --node-labels: %q is not key=value", pair)
			}
			r.Labels[k] = v
		}
	}
	for _, m := range taintsFlag.FindAllStringSubmatch(text, -1) {
		for _, spec := range splitList(unquote(m[1])) {
			t, err := parseTaint(spec)
			if err != nil {
				return err
			}
			r.Taints = append(r.Taints, t)
		}
	}
	for _, m := range maxPodsFlag.FindAllStringSubmatch(text, -1) {
		n, err := strconv.ParseInt(m[1], 10, 32)
		if err != nil {
			return fmt.Errorf("user data: --max-pods: %w", err)
		}
		pods := int32(n)
		r.MaxPods = &pods
	}
	return nil
}

// bootstrapSh is the EKS AL2 AMI's bootstrap script.
const bootstrapSh = "/etc/eks/bootstrap.sh"

// bootstrapShValues are bootstrap.sh's options that take a value, and the
// values it accepts ("" for any); others are taken as positional arguments,
// as bootstrap.sh does.
var bootstrapShValues = map[string][]string{
	"--apiserver-endpoint": nil, "--b64-cluster-ca": nil, "--kubelet-extra-args": nil,
	"--dns-cluster-ip": nil, "--service-ipv4-cidr": nil, "--service-ipv6-cidr": nil,
	"--docker-config-json": nil, "--pause-container-account": nil, "--pause-container-version": nil,
	"--aws-api-retry-attempts": nil, "--cluster-id": nil,
	"--container-runtime":    {"containerd"}, // dockerd is gone since 1.24
	"--use-max-pods":         {"true", "false"},
	"--local-disks":          {"raid0", "raid10", "mount"},
	"--ip-family":            {"ipv4", "ipv6"},
	"--enable-docker-bridge": {"true", "false"}, "--enable-local-outpost": {"true", "false"}, "--mount-bpf-fs": {"true", "false"},
}

// readScript reads a shell script's kubelet flags; a call to bootstrap.sh
// in it is checked as bootstrap.sh checks its arguments.
func (r *KubeletRegistration) readScript(text string) error {
	if i := strings.Index(text, bootstrapSh); i >= 0 {
		if err := r.readBootstrapSh(text[i+len(bootstrapSh):]); err != nil {
			return err
		}
	}
	return r.readFlags(text)
}

// readBootstrapSh checks bootstrap.sh's arguments (the rest of its command
// line): it exits without a cluster name, on an option without its value
// or with a value it does not take, and on --ip-family ipv6 without the
// service CIDR. With --use-max-pods false it leaves the kubelet's own limit
// of 110 pods unless --kubelet-extra-args sets --max-pods.
func (r *KubeletRegistration) readBootstrapSh(args string) error {
	words, err := shellWords(args)
	if err != nil {
		return fmt.Errorf("user data: %s: %w", bootstrapSh, err)
	}
	var positional []string
	values := map[string]string{}
	for i := 0; i < len(words); i++ {
		allowed, takesValue := bootstrapShValues[words[i]]
		if !takesValue {
			positional = append(positional, words[i])
			continue
		}
		if i+1 >= len(words) {
			return fmt.Errorf("user data: %s: %s needs a value", bootstrapSh, words[i])
		}
		if len(allowed) > 0 && !slices.Contains(allowed, words[i+1]) {
			return fmt.Errorf("user data: %s: %s %q is not one of %v", bootstrapSh, words[i], words[i+1], allowed)
		}
		values[words[i]] = words[i+1]
		i++
	}
	if len(positional) == 0 || positional[0] == "" {
		return fmt.Errorf("user data: %s needs the cluster name as its first argument", bootstrapSh)
	}
	if values["--ip-family"] == "ipv6" && values["--service-ipv6-cidr"] == "" {
		return fmt.Errorf("user data: %s: --ip-family ipv6 needs --service-ipv6-cidr", bootstrapSh)
	}
	if values["--use-max-pods"] == "false" {
		pods := int32(110)
		r.MaxPods = &pods
	}
	return nil
}

// shellWords splits one shell command line into its words: quotes removed,
// backslash-newline continuing the line, up to the line's end or a ;, & or
// |. Enough for a bootstrap.sh call as user data writes it, not a shell.
func shellWords(s string) ([]string, error) {
	return splitWords(s, "\n;&|", func(s string, i int, word *strings.Builder) (int, bool, error) {
		switch c := s[i]; c {
		case '\'', '"':
			end := strings.IndexByte(s[i+1:], c)
			if end < 0 {
				return 0, false, fmt.Errorf("unterminated %c quote", c)
			}
			word.WriteString(s[i+1 : i+1+end])
			return i + end + 1, true, nil
		case '\\':
			if i+1 < len(s) && s[i+1] != '\n' {
				word.WriteByte(s[i+1])
				return i + 1, true, nil
			}
			return i + 1, false, nil
		}
		return i, false, nil
	})
}

// splitWords splits a command line into words at spaces and tabs, up to the
// first byte of stop outside quotes. quote reads a quoted or escaped run
// starting at s[i] into word and returns the index of its last byte, and
// whether it made a word; at any other byte it returns i and false.
func splitWords(s, stop string, quote func(s string, i int, word *strings.Builder) (int, bool, error)) ([]string, error) {
	var words []string
	var word strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		end, wrote, err := quote(s, i, &word)
		switch {
		case err != nil:
			return nil, err
		case end != i || wrote:
			i, inWord = end, inWord || wrote
		case s[i] == ' ' || s[i] == '\t' || s[i] == '\r':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		case strings.IndexByte(stop, s[i]) >= 0:
			i = len(s)
		default:
			word.WriteByte(s[i])
			inWord = true
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	return words, nil
}

// parseTaint reads the kubelet's key[=value]:Effect.
func parseTaint(spec string) (corev1.Taint, error) {
	kv, effect, ok := strings.Cut(spec, ":")
	key, value, _ := strings.Cut(kv, "=")
	t := corev1.Taint{Key: key, Value: value, Effect: corev1.TaintEffect(effect)}
	switch t.Effect {
	case corev1.TaintEffectNoSchedule, corev1.TaintEffectPreferNoSchedule, corev1.TaintEffectNoExecute:
	default:
		ok = false
	}
	if !ok || key == "" {
		return corev1.Taint{}, fmt.Errorf("user data: --register-with-taints: %q is not key[=value]:NoSchedule|PreferNoSchedule|NoExecute", spec)
	}
	return t, nil
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}

func splitList(v string) []string {
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// bottlerocketKubernetes is the part of Bottlerocket's [settings.kubernetes]
// that joins the node and changes its registration.
type bottlerocketKubernetes struct {
	ClusterName        string         `toml:"cluster-name"`
	APIServer          string         `toml:"api-server"`
	ClusterCertificate string         `toml:"cluster-certificate"`
	NodeLabels         map[string]any `toml:"node-labels"`
	NodeTaints         map[string]any `toml:"node-taints"`
	MaxPods            *int32         `toml:"max-pods"`
}

// readBottlerocket reads Bottlerocket user data: TOML with a [settings]
// table; ok reports whether text is that. As on a Bottlerocket node, one
// without the cluster's name, API server and certificate never joins, and
// a label or taint of the wrong type fails the settings.
func (r *KubeletRegistration) readBottlerocket(text string) (bool, error) {
	var raw map[string]any
	if toml.Unmarshal([]byte(text), &raw) != nil || raw["settings"] == nil {
		return false, nil
	}
	var doc struct {
		Settings struct {
			Kubernetes bottlerocketKubernetes `toml:"kubernetes"`
		} `toml:"settings"`
	}
	if err := toml.Unmarshal([]byte(text), &doc); err != nil {
		return true, fmt.Errorf("user data: Bottlerocket settings: %w", err)
	}
	k := doc.Settings.Kubernetes
	if k.ClusterName == "" || k.APIServer == "" || k.ClusterCertificate == "" {
		return true, fmt.Errorf("user data: Bottlerocket settings.kubernetes needs cluster-name, api-server and cluster-certificate to join")
	}
	for key, v := range k.NodeLabels {
		value, ok := v.(string)
		if !ok {
			return true, fmt.Errorf("user data: settings.kubernetes.node-labels.%s is a %T, want a string", key, v)
		}
		r.Labels[key] = value
	}
	for _, key := range slices.Sorted(maps.Keys(k.NodeTaints)) {
		v := k.NodeTaints[key]
		var specs []string
		switch v := v.(type) {
		case string:
			specs = []string{v}
		case []any:
			for _, item := range v {
				s, ok := item.(string)
				if !ok {
					return true, fmt.Errorf("user data: settings.kubernetes.node-taints.%s holds a %T, want value:Effect strings", key, item)
				}
				specs = append(specs, s)
			}
		default:
			return true, fmt.Errorf("user data: settings.kubernetes.node-taints.%s is a %T, want value:Effect strings", key, v)
		}
		for _, spec := range specs {
			value, effect, _ := strings.Cut(spec, ":")
			t, err := parseTaint(key + "=" + value + ":" + effect)
			if err != nil {
				return true, err
			}
			r.Taints = append(r.Taints, t)
		}
	}
	if k.MaxPods != nil {
		r.MaxPods = k.MaxPods
	}
	return true, nil
}

// startEKSBootstrapParams are Start-EKSBootstrap.ps1's parameters (all take a
// value); PowerShell stops the script on any other.
var startEKSBootstrapParams = []string{
	"-EKSClusterName", "-KubeletExtraArgs", "-KubeProxyExtraArgs", "-APIServerEndpoint", "-Base64ClusterCA",
	"-DNSClusterIP", "-ContainerRuntime", "-ServiceCIDR", "-ExcludedSnatCIDRs",
}

// readPowerShell reads an EKS Windows node's user data: EC2Launch runs the
// <powershell> block, and its call of Start-EKSBootstrap.ps1 (a line
// "& <script> -Param 'value' ...") is checked as PowerShell binds it: an
// unknown parameter, or one without its value, stops the script, and so does
// a call without -EKSClusterName. -KubeletExtraArgs is read for the
// kubelet's flags.
func (r *KubeletRegistration) readPowerShell(text string) error {
	body, ok := strings.CutPrefix(text, "<powershell>")
	if !ok {
		return nil
	}
	body, _, closed := strings.Cut(body, "</powershell>")
	if !closed {
		return fmt.Errorf("user data: <powershell> is not closed")
	}
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "&") || !strings.Contains(line, "EKSBootstrap") {
			continue
		}
		words, err := powerShellWords(strings.TrimSpace(strings.TrimPrefix(line, "&")))
		if err != nil {
			return fmt.Errorf("user data: Start-EKSBootstrap.ps1 call: %w", err)
		}
		values := map[string]string{}
		for i := 1; i < len(words); i += 2 {
			param := words[i]
			if !slices.ContainsFunc(startEKSBootstrapParams, func(p string) bool { return strings.EqualFold(p, param) }) {
				return fmt.Errorf("user data: Start-EKSBootstrap.ps1: a parameter cannot be found that matches parameter name %q", param)
			}
			if i+1 >= len(words) {
				return fmt.Errorf("user data: Start-EKSBootstrap.ps1: missing an argument for parameter %q", param)
			}
			values[strings.ToLower(param)] = words[i+1]
		}
		if values["-eksclustername"] == "" {
			return fmt.Errorf("user data: Start-EKSBootstrap.ps1 needs -EKSClusterName")
		}
		if err := r.readFlags(values["-kubeletextraargs"]); err != nil {
			return err
		}
	}
	return nil
}

// powerShellWords splits one PowerShell command line into its words: in
// single quotes nothing is special but a doubled quote; in double quotes
// a backtick escapes. Enough for a bootstrap call as user data writes it.
func powerShellWords(s string) ([]string, error) {
	return splitWords(s, "", func(s string, i int, word *strings.Builder) (int, bool, error) {
		switch c := s[i]; c {
		case '\'':
			for i++; i < len(s); i++ {
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						i++
					} else {
						return i, true, nil
					}
				}
				word.WriteByte(s[i])
			}
			return 0, false, fmt.Errorf("unterminated ' quote")
		case '"':
			for i++; i < len(s); i++ {
				if s[i] == '`' && i+1 < len(s) {
					i++
				} else if s[i] == '"' {
					return i, true, nil
				}
				word.WriteByte(s[i])
			}
			return 0, false, fmt.Errorf("unterminated \" quote")
		}
		return i, false, nil
	})
}
