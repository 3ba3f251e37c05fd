package ec2sim

import (
	"strings"
	"testing"
)

func TestShippedScenarioLoads(t *testing.T) {
	s, err := LoadScenario("ap-northeast-2")
	if err != nil {
		t.Fatal(err)
	}
	if s.ZoneID("ap-northeast-2c") != "apne2-az3" || len(s.Subnets) == 0 {
		t.Errorf("scenario: %+v", s)
	}
}

func TestScenarioErrorsNameTheField(t *testing.T) {
	for _, tc := range []struct{ yaml, msg string }{
		{"zones: []", "region is required"},
		{"region: r\nzones: [{name: a}]", "zones[0] needs a name and an id"},
		{"region: r\nzones: [{name: a, id: x}]\nsubnets: [{id: s1, zone: b}]", `subnets[0] (s1) is in unknown zone "b"`},
		{"region: r\nzonez: []", `unknown field "zonez"`},
	} {
		_, err := ParseScenario([]byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: want %q, got %v", tc.yaml, tc.msg, err)
		}
	}
	if _, err := LoadScenario("mars-east-1"); err == nil || !strings.Contains(err.Error(), `no simulator scenario for region "mars-east-1"`) {
		t.Errorf("unknown region: %v", err)
	}
}
