package aws

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"k8s.io/utils/clock"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
)

// subnetAddressesTTL is how long a DescribeSubnets answer stands for a
// subnet's free addresses. Launches in flight are counted on top, so a
// burst does not need fresher counts; what changes behind our back (other
// tenants of the subnet, instances terminating) is caught within a minute.
const subnetAddressesTTL = time.Minute

// subnetAddresses tracks the free addresses of the node classes' subnets,
// so a launch prefers, in each zone, the subnet with the most: EC2's
// AvailableIpAddressCount, described at most every subnetAddressesTTL,
// minus one address per launch of this provider in flight there and per
// launch that took one since the count was described.
type subnetAddresses struct {
	ec2   ec2.DescribeSubnetsAPIClient
	clock clock.PassiveClock

	mu        sync.Mutex
	described map[string]describedSubnet
	launches  map[*subnetReservation]struct{}
}

// describedSubnet is a subnet's free addresses as EC2 last said, and when
// the question was asked.
type describedSubnet struct {
	free int32
	at   time.Time
}

// subnetReservation is one fleet's claim on addresses: one in the preferred
// subnet of each zone it may launch in while in flight (EC2 picks the zone),
// then one in the subnet it used until a count described after it returned.
type subnetReservation struct {
	subnets []string
	used    string
	done    time.Time
}

func newSubnetAddresses(client ec2.DescribeSubnetsAPIClient, c clock.PassiveClock) *subnetAddresses {
	return &subnetAddresses{ec2: client, clock: c, described: map[string]describedSubnet{}, launches: map[*subnetReservation]struct{}{}}
}

// refresh describes the subnets whose count is missing or older than the
// TTL. On error the counts known stay in use.
func (s *subnetAddresses) refresh(ctx context.Context, subnets []awsv1.Subnet) error {
	now := s.clock.Now()
	s.mu.Lock()
	stale := slices.ContainsFunc(subnets, func(sn awsv1.Subnet) bool {
		d, ok := s.described[sn.ID]
		return !ok || now.Sub(d.at) >= subnetAddressesTTL
	})
	s.mu.Unlock()
	if !stale {
		return nil
	}
	ids := make([]string, len(subnets))
	for i, sn := range subnets {
		ids[i] = sn.ID
	}
	free := map[string]int32{}
	pages := ec2.NewDescribeSubnetsPaginator(s.ec2, &ec2.DescribeSubnetsInput{SubnetIds: ids})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("describing the free addresses of subnets %v: %w", ids, err)
		}
		for _, sn := range page.Subnets {
			free[aws.ToString(sn.SubnetId)] = aws.ToInt32(sn.AvailableIpAddressCount)
		}
	}
	s.record(free, now)
	return nil
}

// record takes EC2's count of free addresses, asked for at at.
func (s *subnetAddresses) record(free map[string]int32, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, n := range free {
		s.described[id] = describedSubnet{free: n, at: at}
	}
	// A launch that returned before this count was asked for is in it.
	for r := range s.launches {
		if d, ok := s.described[r.used]; ok && !r.done.IsZero() && r.done.Before(d.at) {
			delete(s.launches, r)
		}
	}
}

// freeLocked is a subnet's free addresses less this provider's launches
// that EC2's count does not show yet; ok is false when it was never
// described.
func (s *subnetAddresses) freeLocked(id string) (free int32, ok bool) {
	d, ok := s.described[id]
	if !ok {
		return 0, false
	}
	free = d.free
	for r := range s.launches {
		switch {
		case r.done.IsZero() && slices.Contains(r.subnets, id):
			free--
		case !r.done.IsZero() && r.used == id && !r.done.Before(d.at):
			free--
		}
	}
	return free, true
}

// byZone orders each zone's subnets for a launch: the most free addresses
// first; subnets never described after those, in the node class's order
// (free addresses at resolution).
func (s *subnetAddresses) byZone(subnets []awsv1.Subnet) map[string][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	type ranked struct {
		id    string
		free  int32
		known bool
	}
	zones := map[string][]ranked{}
	for _, sn := range subnets {
		free, known := s.freeLocked(sn.ID)
		zones[sn.Zone] = append(zones[sn.Zone], ranked{sn.ID, free, known})
	}
	out := make(map[string][]string, len(zones))
	for zone, rs := range zones {
		slices.SortStableFunc(rs, func(a, b ranked) int {
			if a.known != b.known {
				if a.known {
					return -1
				}
				return 1
			}
			return cmp.Compare(b.free, a.free)
		})
		for _, r := range rs {
			out[zone] = append(out[zone], r.id)
		}
	}
	return out
}

// reserve counts a fleet in flight against the given subnets.
func (s *subnetAddresses) reserve(subnets []string) *subnetReservation {
	r := &subnetReservation{subnets: subnets}
	s.mu.Lock()
	s.launches[r] = struct{}{}
	s.mu.Unlock()
	return r
}

// release ends a fleet: its address stays counted in used, the subnet its
// instance went to ("" when it launched nothing), until a later count.
func (s *subnetAddresses) release(r *subnetReservation, used string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if used == "" {
		delete(s.launches, r)
		return
	}
	r.used, r.done = used, s.clock.Now()
}

// full records EC2's word that a subnet has no free address left.
func (s *subnetAddresses) full(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.described[id] = describedSubnet{free: 0, at: s.clock.Now()}
}

// zoneFull reports whether every subnet of zone is known to have no free
// address, by EC2's last word (launches in flight aside).
func (s *subnetAddresses) zoneFull(zone string, subnets []awsv1.Subnet) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sn := range subnets {
		if d, ok := s.described[sn.ID]; sn.Zone == zone && (!ok || d.free > 0) {
			return false
		}
	}
	return true
}
