package aws

import (
	"strings"
	"testing"
)

func TestParseProviderID(t *testing.T) {
	for _, tc := range []struct {
		in, zone, id string
	}{
		{"aws:///ap-northeast-2a/i-0123456789abcdef0", "ap-northeast-2a", "i-0123456789abcdef0"},
		{"aws:///us-east-1b/i-0a1b2c3d", "us-east-1b", "i-0a1b2c3d"},
	} {
		zone, id, err := ParseProviderID(tc.in)
		if err != nil || zone != tc.zone || id != tc.id {
			t.Errorf("ParseProviderID(%q) = %q, %q, %v; want %q, %q", tc.in, zone, id, err, tc.zone, tc.id)
		}
		if got := ProviderID(zone, id); got != tc.in {
			t.Errorf("ProviderID(%q, %q) = %q, want %q", zone, id, got, tc.in)
		}
	}
	for _, bad := range []string{
		"", "i-0123456789abcdef0", "aws://ap-northeast-2a/i-0123456789abcdef0", "aws:///i-0123456789abcdef0",
		"aws:///ap-northeast-2a/", "aws:///ap-northeast-2a/i-XYZ", "gce:///ap-northeast-2a/i-0123456789abcdef0",
		"aws:///ap-northeast-2a/i-0123456789abcdef0/extra", "kwok://node-1",
	} {
		_, _, err := ParseProviderID(bad)
		if err == nil || !strings.Contains(err.Error(), "aws:///<zone>/i-") {
			t.Errorf("ParseProviderID(%q) = %v, want an error showing the expected form", bad, err)
		}
	}
}
