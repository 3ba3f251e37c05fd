package ec2sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// parameter is an SSM parameter's current version.
type parameter struct {
	value    string
	version  int64
	modified time.Time
}

// SetParameter creates or changes an SSM parameter (raising its version), as
// EKS does when it publishes a new AMI under a recommended image_id name, so
// tests can make a node class resolve to a newer image.
func (s *Server) SetParameter(name, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.params[name]
	s.params[name] = parameter{value: value, version: p.version + 1, modified: s.clock.now()}
}

// getParameter answers SSM GetParameter for the scenario's parameters (and
// those SetParameter added). Public parameters (/aws/service/...) have the
// account-less ARN AWS gives them.
func (s *Server) getParameter(w http.ResponseWriter, body []byte) {
	var in struct {
		Name           string `json:"Name"`
		WithDecryption bool   `json:"WithDecryption"`
	}
	if err := json.Unmarshal(body, &in); err != nil || in.Name == "" {
		s.jsonError(w, "ValidationException", 400, "1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null")
		return
	}
	s.mu.Lock()
	p, ok := s.params[in.Name]
	s.mu.Unlock()
	if !ok {
		// SSM's answer carries no message, only the type.
		s.jsonError(w, "ParameterNotFound", 400, "")
		return
	}
	account := s.scenario.AccountID
	if strings.HasPrefix(in.Name, "/aws/service/") {
		account = ""
	}
	name := strings.TrimPrefix(in.Name, "/")
	writeJSON(w, map[string]any{"Parameter": map[string]any{
		"ARN":              fmt.Sprintf("arn:aws:ssm:%s:%s:parameter/%s", s.scenario.Region, account, name),
		"DataType":         "text",
		"LastModifiedDate": float64(p.modified.UnixMilli()) / 1000,
		"Name":             in.Name,
		"Type":             "String",
		"Value":            p.value,
		"Version":          p.version,
	}})
}
