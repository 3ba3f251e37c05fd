package aws

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/nodewright/nodewright/pkg/cloudprovider"
)

// FuzzParseInterruption: whatever the body, reading it never panics, is
// deterministic, and keeps its promises to the controller: a message that
// is acted on (spot, rebalance, scheduled change, state change) comes from
// own's account and region, names at least one instance and only EC2
// instance ids; an unknown or foreign one names none; the detail that goes
// into logs stays short. Mutations tried: dropping the account check fails
// the "other account" seed; dropping the instance id check fails the seed
// naming "i-../x"; Detail without cut fails the long detail-type seed.
func FuzzParseInterruption(f *testing.F) {
	for _, body := range []string{
		spotWarning, rebalance, stateChange, health, "", "null", "[]", "hello", `{"detail":null}`,
		strings.Replace(spotWarning, `"account":"123456789012"`, `"account":"999999999999"`, 1),
		strings.Replace(rebalance, `"i-0aaa0000000000000"`, `"i-../x"`, 1),
		strings.Replace(spotWarning, `"EC2 Spot Instance Interruption Warning"`, `"`+strings.Repeat("W", 4000)+`"`, 1),
		strings.Replace(health, `"affectedEntities":[`, `"affectedEntities":[{"entityValue":null},`, 1),
		strings.Replace(stateChange, `"state":"stopping"`, `"state":"`+strings.Repeat("é", 1000)+`"`, 1),
	} {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body string) {
		in := ParseInterruption(body, own)
		if again := ParseInterruption(body, own); !reflect.DeepEqual(in, again) {
			t.Fatalf("two readings differ: %+v, %+v", in, again)
		}
		if len(in.Detail) > 2*maxDetail+8 {
			t.Fatalf("%d bytes of detail for %s", len(in.Detail), in.Kind)
		}
		switch in.Kind {
		case cloudprovider.UnknownInterruption, cloudprovider.ForeignInterruption:
			if len(in.InstanceIDs) != 0 || in.State != "" {
				t.Fatalf("an ignored message names instances %q, state %q", in.InstanceIDs, in.State)
			}
		case cloudprovider.SpotInterruption, cloudprovider.RebalanceRecommendation, cloudprovider.ScheduledChange, cloudprovider.StateChange:
			var envelope struct{ Account, Region string }
			if err := json.Unmarshal([]byte(body), &envelope); err != nil || envelope.Account != own.Account || envelope.Region != own.Region {
				t.Fatalf("acted on a %s from account %q, region %q (%v)", in.Kind, envelope.Account, envelope.Region, err)
			}
			if len(in.InstanceIDs) == 0 {
				t.Fatalf("a %s naming no instance", in.Kind)
			}
			for _, id := range in.InstanceIDs {
				if !instanceIDPattern.MatchString(id) {
					t.Fatalf("a %s names %q, not an instance id", in.Kind, id)
				}
			}
			if (in.Kind == cloudprovider.StateChange) != (in.State != "") {
				t.Fatalf("a %s with state %q", in.Kind, in.State)
			}
		default:
			t.Fatalf("kind %q", in.Kind)
		}
	})
}
