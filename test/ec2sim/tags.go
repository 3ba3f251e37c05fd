package ec2sim

import (
	"encoding/xml"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// maxTags is EC2's limit of tags per resource.
const maxTags = 50

// checkTags applies EC2's rules for user tags: at most 50, none in the aws:
// namespace, which EC2 keeps for itself.
func checkTags(tags map[string]string) *APIError {
	if len(tags) > maxTags {
		return &APIError{Code: "TagLimitExceeded", Status: 400, Message: fmt.Sprintf("The maximum number of tags per resource is %d", maxTags)}
	}
	for k := range tags {
		if k == "" {
			return invalidParameter("Tag keys cannot be empty")
		}
		if strings.HasPrefix(strings.ToLower(k), "aws:") {
			return invalidParameter("Tag keys starting with 'aws:' are reserved for internal use")
		}
	}
	return nil
}

// readTagSpecifications reads TagSpecification.N (ResourceType and Tag.M) into
// tags by resource type, rejecting types the action cannot tag.
func readTagSpecifications(p params, allowed ...string) (map[string]map[string]string, *APIError) {
	out := map[string]map[string]string{}
	for _, g := range p.groups("TagSpecification") {
		spec := p.sub(g)
		resourceType := spec.get("ResourceType")
		if !slices.Contains(allowed, resourceType) {
			return nil, invalidParameter("'%s' is not a valid taggable resource type for this operation.", resourceType)
		}
		tags := spec.tags("Tag")
		if apiErr := checkTags(tags); apiErr != nil {
			return nil, apiErr
		}
		if out[resourceType] == nil {
			out[resourceType] = map[string]string{}
		}
		for k, v := range tags {
			out[resourceType][k] = v
		}
	}
	return out, nil
}

// createTags tags instances and launch templates; every resource is checked
// before any is tagged, so a bad id changes nothing, as in EC2.
func (s *Server) createTags(p params) (any, *APIError) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.advanceLocked()
	ids := p.list("ResourceId")
	if len(ids) == 0 {
		return nil, &APIError{Code: "MissingParameter", Status: 400, Message: "The request must contain the parameter resourceIdSet"}
	}
	tags := p.tags("Tag")
	if apiErr := checkTags(tags); apiErr != nil {
		return nil, apiErr
	}
	var targets []map[string]string
	for _, id := range ids {
		switch {
		case strings.HasPrefix(id, "i-"):
			found, apiErr := s.lookupInstancesLocked([]string{id})
			if apiErr != nil {
				return nil, apiErr
			}
			targets = append(targets, found[0].Tags)
		case strings.HasPrefix(id, "lt-"):
			lt, apiErr := s.templateLocked(id, "")
			if apiErr != nil {
				return nil, apiErr
			}
			targets = append(targets, lt.Tags)
		default:
			return nil, &APIError{Code: "InvalidID", Status: 400, Message: fmt.Sprintf("The ID '%s' is not valid (the simulator tags instances and launch templates)", id)}
		}
	}
	for _, t := range targets {
		merged := len(t)
		for k := range tags {
			if _, ok := t[k]; !ok {
				merged++
			}
		}
		if merged > maxTags {
			return nil, &APIError{Code: "TagLimitExceeded", Status: 400, Message: fmt.Sprintf("The maximum number of tags per resource is %d", maxTags)}
		}
	}
	for _, t := range targets {
		for k, v := range tags {
			t[k] = v
		}
	}
	return struct {
		XMLName xml.Name `xml:"r"`
		Return  bool     `xml:"return"`
	}{Return: true}, nil
}

// idempotentAnswer is the answer to a request with a client token, replayed
// when the same request comes again.
type idempotentAnswer struct {
	request string
	answer  any
}

// replayLocked returns the remembered answer to a repeated request with the
// same ClientToken, or IdempotentParameterMismatch when the token comes back
// with different parameters.
func (s *Server) replayLocked(action string, p params) (any, bool, *APIError) {
	token := p.get("ClientToken")
	if token == "" {
		return nil, false, nil
	}
	prev, ok := s.tokens[action+"\x00"+token]
	if !ok {
		return nil, false, nil
	}
	if prev.request != url.Values(p).Encode() {
		return nil, false, &APIError{Code: "IdempotentParameterMismatch", Status: 400,
			Message: fmt.Sprintf("The client token %s was already used with different parameters.", token)}
	}
	return prev.answer, true, nil
}

// rememberLocked keeps a successful answer for replayLocked.
func (s *Server) rememberLocked(action string, p params, answer any) {
	if token := p.get("ClientToken"); token != "" {
		s.tokens[action+"\x00"+token] = idempotentAnswer{url.Values(p).Encode(), answer}
	}
}
