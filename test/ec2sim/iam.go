package ec2sim

import (
	"encoding/xml"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// IAM: the instance profile calls nodewright makes for EC2NodeClasses with
// spec.role, answered as IAM's Query API answers them. IAM is global and has
// its own endpoint; here it shares the simulator's, and a request is IAM's
// when its SigV4 credential scope names the iam service. Roles are not
// created here: they are the scenario's (the roles of its instanceProfiles and
// its roles list), as a cluster's node role is made before nodewright runs.
// IAM's eventual consistency is not modelled: a change is visible at once.

// iamVersion is the API version IAM requests carry.
const iamVersion = "2010-05-08"

// Limits IAM enforces on instance profiles.
const (
	// profileRoleQuota is InstanceSessionsPerInstanceProfile: one role.
	profileRoleQuota = 1
	// iamTagQuota is the tags an IAM resource may have.
	iamTagQuota = 50
)

// iamName is the pattern of role and instance profile names.
var iamName = regexp.MustCompile(`^[\w+=,.@-]{1,128}$`)

// iamPath is the pattern of paths: "/" or "/a/b/".
var iamPath = regexp.MustCompile(`^(/|/[\x21-\x7E]+/)$`)

// instanceProfile is an IAM instance profile.
type instanceProfile struct {
	name, path, id string
	created        time.Time
	role           string // "" when it has none; IAM allows at most one
	tags           map[string]string
}

// InstanceProfile is what a test may read of an instance profile.
type InstanceProfile struct {
	Name, Path, Role string
	Tags             map[string]string
}

// isIAM reports whether the request is signed for IAM.
func isIAM(r *http.Request) bool {
	m := scopeService.FindStringSubmatch(r.Header.Get("Authorization"))
	return m != nil && m[1] == "iam"
}

// seedIAM loads the scenario's instance profiles and roles.
func (s *Server) seedIAM() {
	s.roles = map[string]time.Time{}
	s.profiles = map[string]*instanceProfile{}
	for _, role := range s.scenario.Roles {
		s.roles[role] = s.clock.now()
	}
	for _, name := range sortedKeys(s.scenario.InstanceProfiles) {
		role := s.scenario.InstanceProfiles[name]
		s.roles[role] = s.clock.now()
		s.profiles[name] = &instanceProfile{name: name, path: "/", id: s.iamID("AIPA"), created: s.clock.now(), role: role, tags: map[string]string{}}
	}
}

// iamID makes a unique IAM id with the prefix IAM gives the entity type.
func (s *Server) iamID(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s%016X", prefix, s.idBase^s.seq)
}

// InstanceProfile returns the instance profile of that name, if it exists.
func (s *Server) InstanceProfile(name string) (InstanceProfile, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.profiles[name]
	if !ok {
		return InstanceProfile{}, false
	}
	return InstanceProfile{Name: p.name, Path: p.path, Role: p.role, Tags: maps.Clone(p.tags)}, true
}

func (s *Server) profileARN(path, name string) string {
	return fmt.Sprintf("arn:aws:iam::%s:instance-profile%s%s", s.scenario.AccountID, path, name)
}

func (s *Server) roleARN(name string) string {
	return fmt.Sprintf("arn:aws:iam::%s:role/%s", s.scenario.AccountID, name)
}

// iamError is an IAM error answer.
type iamError struct {
	code    string
	status  int
	message string
}

func noSuchProfile(name string) *iamError {
	return &iamError{"NoSuchEntity", 404, fmt.Sprintf("Instance Profile %s cannot be found.", name)}
}

func iamValidation(format string, args ...any) *iamError {
	return &iamError{"ValidationError", 400, fmt.Sprintf(format, args...)}
}

// iamHandlers serve the IAM actions the simulator implements, under s.mu.
var iamHandlers = map[string]func(*Server, params) (any, *iamError){
	"CreateInstanceProfile":         (*Server).createInstanceProfile,
	"GetInstanceProfile":            (*Server).getInstanceProfile,
	"TagInstanceProfile":            (*Server).tagInstanceProfile,
	"AddRoleToInstanceProfile":      (*Server).addRoleToInstanceProfile,
	"RemoveRoleFromInstanceProfile": (*Server).removeRoleFromInstanceProfile,
	"DeleteInstanceProfile":         (*Server).deleteInstanceProfile,
}

// serveIAM answers an IAM Query request.
func (s *Server) serveIAM(w http.ResponseWriter, form url.Values) {
	action := form.Get("Action")
	if f, ok := s.takeFault(action); ok {
		s.queryError(w, iamNamespace, f.code, f.status, "injected by the simulator")
		return
	}
	if form.Get("Version") != iamVersion {
		s.queryError(w, iamNamespace, "InvalidAction", 400, fmt.Sprintf("could not find operation %s for version %s", action, form.Get("Version")))
		return
	}
	handler, ok := iamHandlers[action]
	if !ok {
		s.queryError(w, iamNamespace, "InvalidAction", 400, fmt.Sprintf("the simulator does not implement IAM %s", action))
		return
	}
	s.mu.Lock()
	result, apiErr := handler(s, params(form))
	s.mu.Unlock()
	if apiErr != nil {
		s.queryError(w, iamNamespace, apiErr.code, apiErr.status, apiErr.message)
		return
	}
	type response struct {
		XMLName   xml.Name
		Xmlns     string `xml:"xmlns,attr"`
		Result    any
		RequestID string `xml:"ResponseMetadata>RequestId"`
	}
	resp := response{XMLName: xml.Name{Local: action + "Response"}, Xmlns: iamNamespace, RequestID: s.requestID()}
	if result != nil {
		resp.Result = struct {
			XMLName xml.Name
			Inner   any
		}{xml.Name{Local: action + "Result"}, result}
	}
	body, err := xml.Marshal(resp)
	if err != nil {
		s.queryError(w, iamNamespace, "ServiceFailure", 500, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	_, _ = w.Write(append([]byte(xml.Header), body...))
}

const iamNamespace = "https://iam.amazonaws.com/doc/" + iamVersion + "/"

// iamTags reads IAM's tag list (Tags.member.1.Key, Tags.member.1.Value).
func iamTags(p params) (map[string]string, *iamError) {
	tags := p.tags("Tags.member")
	if len(tags) > iamTagQuota {
		return nil, &iamError{"LimitExceeded", 409, fmt.Sprintf("Cannot exceed quota for TagsPerInstanceProfile: %d", iamTagQuota)}
	}
	for k, v := range tags {
		if k == "" || len(k) > 128 || len(v) > 256 || strings.HasPrefix(strings.ToLower(k), "aws:") {
			return nil, iamValidation("tag key %q or value %q is not valid", k, v)
		}
	}
	return tags, nil
}

// profileName reads and validates InstanceProfileName.
func profileName(p params) (string, *iamError) {
	name := p.get("InstanceProfileName")
	if !iamName.MatchString(name) {
		return "", iamValidation("1 validation error detected: Value '%s' at 'instanceProfileName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+", name)
	}
	return name, nil
}

func (s *Server) createInstanceProfile(p params) (any, *iamError) {
	name, err := profileName(p)
	if err != nil {
		return nil, err
	}
	path := orDefault(p.get("Path"), "/")
	if !iamPath.MatchString(path) || len(path) > 512 {
		return nil, iamValidation("path %q must begin and end with /", path)
	}
	tags, err := iamTags(p)
	if err != nil {
		return nil, err
	}
	// Names are unique in the account whatever their path, and compared
	// without case.
	for existing := range s.profiles {
		if strings.EqualFold(existing, name) {
			return nil, &iamError{"EntityAlreadyExists", 409, fmt.Sprintf("Instance Profile %s already exists.", existing)}
		}
	}
	ip := &instanceProfile{name: name, path: path, id: s.iamID("AIPA"), created: s.clock.now(), tags: tags}
	s.profiles[name] = ip
	return s.profileXML(ip), nil
}

func (s *Server) getInstanceProfile(p params) (any, *iamError) {
	ip, err := s.profile(p)
	if err != nil {
		return nil, err
	}
	return s.profileXML(ip), nil
}

// profile finds the instance profile a request names.
func (s *Server) profile(p params) (*instanceProfile, *iamError) {
	name, err := profileName(p)
	if err != nil {
		return nil, err
	}
	ip, ok := s.profiles[name]
	if !ok {
		return nil, noSuchProfile(name)
	}
	return ip, nil
}

func (s *Server) tagInstanceProfile(p params) (any, *iamError) {
	ip, err := s.profile(p)
	if err != nil {
		return nil, err
	}
	tags, err := iamTags(p)
	if err != nil {
		return nil, err
	}
	if len(tags) == 0 {
		return nil, iamValidation("tags must have at least 1 member")
	}
	merged := maps.Clone(ip.tags)
	maps.Copy(merged, tags)
	if len(merged) > iamTagQuota {
		return nil, &iamError{"LimitExceeded", 409, fmt.Sprintf("Cannot exceed quota for TagsPerInstanceProfile: %d", iamTagQuota)}
	}
	ip.tags = merged
	return nil, nil
}

// roleName reads RoleName and finds the role.
func (s *Server) roleName(p params) (string, *iamError) {
	role := p.get("RoleName")
	if !iamName.MatchString(role) {
		return "", iamValidation("1 validation error detected: Value '%s' at 'roleName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+", role)
	}
	if _, ok := s.roles[role]; !ok {
		return "", &iamError{"NoSuchEntity", 404, fmt.Sprintf("The role with name %s cannot be found.", role)}
	}
	return role, nil
}

// profileAndRole finds the instance profile and the role a request names.
func (s *Server) profileAndRole(p params) (*instanceProfile, string, *iamError) {
	ip, err := s.profile(p)
	if err != nil {
		return nil, "", err
	}
	role, err := s.roleName(p)
	return ip, role, err
}

func (s *Server) addRoleToInstanceProfile(p params) (any, *iamError) {
	ip, role, err := s.profileAndRole(p)
	if err != nil {
		return nil, err
	}
	// Adding the role it already has fails the same way: the quota counts
	// roles, not distinct ones.
	if ip.role != "" {
		return nil, &iamError{"LimitExceeded", 409, fmt.Sprintf("Cannot exceed quota for InstanceSessionsPerInstanceProfile: %d", profileRoleQuota)}
	}
	ip.role = role
	return nil, nil
}

func (s *Server) removeRoleFromInstanceProfile(p params) (any, *iamError) {
	ip, role, err := s.profileAndRole(p)
	if err != nil {
		return nil, err
	}
	if ip.role != role {
		return nil, &iamError{"NoSuchEntity", 404, fmt.Sprintf("The role with name %s cannot be found in instance profile %s.", role, ip.name)}
	}
	ip.role = ""
	return nil, nil
}

func (s *Server) deleteInstanceProfile(p params) (any, *iamError) {
	ip, err := s.profile(p)
	if err != nil {
		return nil, err
	}
	if ip.role != "" {
		return nil, &iamError{"DeleteConflict", 409, "Cannot delete entity, must remove roles from instance profile first."}
	}
	delete(s.profiles, ip.name)
	return nil, nil
}

// The answer's instance profile, in IAM's XML.
type (
	xmlIAMTag struct {
		Key   string `xml:"Key"`
		Value string `xml:"Value"`
	}
	xmlRole struct {
		Path       string `xml:"Path"`
		RoleName   string `xml:"RoleName"`
		RoleID     string `xml:"RoleId"`
		Arn        string `xml:"Arn"`
		CreateDate string `xml:"CreateDate"`
	}
	xmlInstanceProfile struct {
		XMLName    xml.Name    `xml:"InstanceProfile"`
		Path       string      `xml:"Path"`
		Name       string      `xml:"InstanceProfileName"`
		ID         string      `xml:"InstanceProfileId"`
		Arn        string      `xml:"Arn"`
		CreateDate string      `xml:"CreateDate"`
		Roles      []xmlRole   `xml:"Roles>member"`
		Tags       []xmlIAMTag `xml:"Tags>member,omitempty"`
	}
)

func (s *Server) profileXML(ip *instanceProfile) xmlInstanceProfile {
	out := xmlInstanceProfile{Path: ip.path, Name: ip.name, ID: ip.id, Arn: s.profileARN(ip.path, ip.name), CreateDate: ip.created.UTC().Format(time.RFC3339)}
	// An empty <Roles/> as IAM sends it: the SDK reads a profile without
	// roles as Roles: [] either way.
	out.Roles = []xmlRole{}
	if ip.role != "" {
		out.Roles = append(out.Roles, xmlRole{Path: "/", RoleName: ip.role, RoleID: "AROA" + strings.ToUpper(fmt.Sprintf("%016x", s.idBase)),
			Arn: s.roleARN(ip.role), CreateDate: s.roles[ip.role].UTC().Format(time.RFC3339)})
	}
	for _, k := range slices.Sorted(maps.Keys(ip.tags)) {
		out.Tags = append(out.Tags, xmlIAMTag{k, ip.tags[k]})
	}
	return out
}

// iam adds the checks of an IAM action: the action on the instance profile's
// ARN (the tags it has as resource tags, those the call puts as request
// tags), and for AddRoleToInstanceProfile the iam:PassRole of the role, which
// IAM checks there as EC2 checks it at launch.
func (a *authz) iam(action string, p params) {
	s := a.s
	name := p.get("InstanceProfileName")
	path := orDefault(p.get("Path"), "/")
	var resourceTags map[string]string
	if ip, ok := s.profiles[name]; ok {
		path, resourceTags = ip.path, ip.tags
	}
	if action == "CreateInstanceProfile" {
		resourceTags = nil
	}
	var requestTags map[string]string
	if action == "CreateInstanceProfile" || action == "TagInstanceProfile" {
		requestTags = p.tags("Tags.member")
	}
	if _, ok := iamHandlers[action]; !ok || name == "" {
		return
	}
	a.add(newCheck("iam:"+action, s.profileARN(path, name), requestTags, resourceTags, nil))
	if role := p.get("RoleName"); action == "AddRoleToInstanceProfile" && role != "" {
		a.add(newCheck("iam:PassRole", s.roleARN(role), nil, nil, map[string]string{"iam:PassedToService": "ec2.amazonaws.com"}))
	}
}
