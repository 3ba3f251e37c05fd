package ec2sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// EKS: DescribeCluster, which nodewright asks for the cluster's endpoint, CA
// and service CIDR when they are not given. EKS speaks REST-JSON (GET
// /clusters/{name}) on its own endpoint; here it shares the simulator's, and
// a request is EKS's when its SigV4 credential scope names the eks service.
// Only the clusters registered with SetCluster exist: any other name is
// ResourceNotFoundException, as in EKS.

// EKSCluster is a cluster the simulated EKS describes.
type EKSCluster struct {
	// Name is the cluster's name (the path parameter of DescribeCluster).
	Name string
	// Endpoint is the API server URL.
	Endpoint string
	// CertificateAuthority is the API server's CA, base64-encoded PEM, as
	// EKS returns it.
	CertificateAuthority string
	// ServiceCIDR is the IPv4 service CIDR (kubernetesNetworkConfig).
	ServiceCIDR string
	// Version is the Kubernetes minor version, e.g. "1.33".
	Version string
}

// SetCluster makes EKS describe c (replacing a cluster of the same name).
func (s *Server) SetCluster(c EKSCluster) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.clusters == nil {
		s.clusters = map[string]EKSCluster{}
	}
	s.clusters[c.Name] = c
}

// isEKS reports whether the request is signed for EKS.
func isEKS(r *http.Request) bool {
	m := scopeService.FindStringSubmatch(r.Header.Get("Authorization"))
	return m != nil && m[1] == "eks"
}

// eksClusterName is the name in a DescribeCluster path, "" for another path.
func eksClusterName(r *http.Request) string {
	name, ok := strings.CutPrefix(r.URL.EscapedPath(), "/clusters/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return ""
	}
	name, err := url.PathUnescape(name)
	if err != nil {
		return ""
	}
	return name
}

func (s *Server) clusterARN(name string) string {
	return fmt.Sprintf("arn:aws:eks:%s:%s:cluster/%s", s.scenario.Region, s.scenario.AccountID, name)
}

// serveEKS answers an EKS REST-JSON request. Errors are written as the JSON
// 1.1 protocol's (jsonError): the SDK reads REST-JSON errors the same way.
func (s *Server) serveEKS(w http.ResponseWriter, r *http.Request) {
	name := eksClusterName(r)
	if r.Method != http.MethodGet || name == "" {
		s.jsonError(w, "InvalidRequestException", 400, fmt.Sprintf("the simulator does not implement EKS %s %s", r.Method, r.URL.Path))
		return
	}
	if f, ok := s.takeFault("DescribeCluster"); ok {
		s.jsonError(w, f.code, f.status, "injected by the simulator")
		return
	}
	s.mu.Lock()
	c, ok := s.clusters[name]
	s.mu.Unlock()
	if !ok {
		s.jsonError(w, "ResourceNotFoundException", 404, fmt.Sprintf("No cluster found for name: %s.", name))
		return
	}
	type cluster struct {
		Name                 string `json:"name"`
		Arn                  string `json:"arn"`
		Endpoint             string `json:"endpoint"`
		Status               string `json:"status"`
		Version              string `json:"version"`
		CertificateAuthority struct {
			Data string `json:"data"`
		} `json:"certificateAuthority"`
		KubernetesNetworkConfig struct {
			ServiceIpv4Cidr string `json:"serviceIpv4Cidr"`
			IPFamily        string `json:"ipFamily"`
		} `json:"kubernetesNetworkConfig"`
	}
	out := cluster{Name: c.Name, Arn: s.clusterARN(c.Name), Endpoint: c.Endpoint, Status: "ACTIVE", Version: c.Version}
	out.CertificateAuthority.Data = c.CertificateAuthority
	out.KubernetesNetworkConfig.ServiceIpv4Cidr, out.KubernetesNetworkConfig.IPFamily = c.ServiceCIDR, "ipv4"
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Requestid", s.requestID())
	_ = json.NewEncoder(w).Encode(map[string]cluster{"cluster": out})
}
