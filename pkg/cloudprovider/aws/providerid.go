package aws

import (
	"fmt"
	"regexp"
)

// providerIDPattern is the providerID the AWS cloud controller manager gives
// EC2 nodes: aws:///<zone>/<instance id>.
var providerIDPattern = regexp.MustCompile(`^aws:///([a-z0-9-]+)/(i-[0-9a-f]{8,17})$`)

// ProviderID is the providerID of an instance in zone.
func ProviderID(zone, instanceID string) string {
	return fmt.Sprintf("aws:///%s/%s", zone, instanceID)
}

// ParseProviderID returns the zone and instance id of an EC2 providerID. It
// accepts only the exact form nodes carry, so a typo never turns into a
// call against some other instance.
func ParseProviderID(providerID string) (zone, instanceID string, err error) {
	m := providerIDPattern.FindStringSubmatch(providerID)
	if m == nil {
		return "", "", fmt.Errorf("parsing provider ID %q: want aws:///<zone>/i-<hex digits>", providerID)
	}
	return m[1], m[2], nil
}
