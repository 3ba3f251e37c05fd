package aws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/pricing"
	pricingtypes "github.com/aws/aws-sdk-go-v2/service/pricing/types"
	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/nodewright/nodewright/pkg/catalog"
)

// ec2API is what the instance-type provider needs of EC2.
type ec2API interface {
	ec2.DescribeInstanceTypesAPIClient
	ec2.DescribeInstanceTypeOfferingsAPIClient
	ec2.DescribeSpotPriceHistoryAPIClient
	DescribeAvailabilityZones(context.Context, *ec2.DescribeAvailabilityZonesInput, ...func(*ec2.Options)) (*ec2.DescribeAvailabilityZonesOutput, error)
}

// pricingAPI is what it needs of the Pricing API.
type pricingAPI interface {
	pricing.GetProductsAPIClient
}

// InstanceTypeOptions configure the instance-type provider.
type InstanceTypeOptions struct {
	Region string
	// Snapshot is the offline catalog used until, and wherever, live data is
	// missing. Required.
	Snapshot *catalog.Snapshot
	// Unavailable is shared with the launch path, which marks offerings out.
	Unavailable *catalog.UnavailableOfferings
	// SpotInterval is how often spot prices are refreshed; default 5 minutes.
	SpotInterval time.Duration
	// OnDemandInterval is how often on-demand prices are refreshed; default 12h.
	OnDemandInterval time.Duration
	// TypesInterval is how often types, zones and offerings are refreshed;
	// default 12h.
	TypesInterval time.Duration
	Clock         clock.WithTicker
	Log           logr.Logger
}

// InstanceTypeProvider keeps the region's catalog: built from the snapshot at
// once, then from live EC2 and Pricing data as refreshes succeed. Each source
// falls back to the snapshot on its own, so one failing API never empties or
// stalls the catalog.
type InstanceTypeProvider struct {
	ec2     ec2API
	pricing pricingAPI
	opts    InstanceTypeOptions
	current atomic.Pointer[catalog.Catalog]

	mu sync.Mutex
	// Live data; nil until its first successful refresh.
	zoneNames catalog.ZoneNames               // zone id -> name
	specs     map[string]catalog.SnapshotType // specs, no regions
	zones     map[string][]string             // type -> zone ids offering it
	spot      map[zoneKey]float64             // (type, zone id) -> $/h
	onDemand  map[string]float64              // type -> $/h
}

type zoneKey struct{ instanceType, zoneID string }

// NewInstanceTypeProvider builds the provider with the snapshot's catalog; it
// makes no AWS call.
func NewInstanceTypeProvider(ec2Client ec2API, pricingClient pricingAPI, opts InstanceTypeOptions) (*InstanceTypeProvider, error) {
	if opts.Snapshot == nil || opts.Region == "" {
		return nil, errors.New("instance types: a snapshot and a region are required")
	}
	if opts.SpotInterval <= 0 {
		opts.SpotInterval = 5 * time.Minute
	}
	if opts.OnDemandInterval <= 0 {
		opts.OnDemandInterval = 12 * time.Hour
	}
	if opts.TypesInterval <= 0 {
		opts.TypesInterval = 12 * time.Hour
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Unavailable == nil {
		opts.Unavailable = catalog.NewUnavailableOfferings(catalog.UnavailableOptions{})
	}
	p := &InstanceTypeProvider{ec2: ec2Client, pricing: pricingClient, opts: opts}
	if err := p.rebuild(); err != nil {
		return nil, err
	}
	return p, nil
}

// Catalog returns the current catalog. It is never nil and never blocks.
func (p *InstanceTypeProvider) Catalog() *catalog.Catalog { return p.current.Load() }

// Start runs Run in a goroutine and returns at once.
func (p *InstanceTypeProvider) Start(ctx context.Context) {
	go p.Run(ctx)
}

// Run refreshes everything once, then each source on its own timer, until
// ctx ends; failures are logged and retried next period.
func (p *InstanceTypeProvider) Run(ctx context.Context) {
	p.Refresh(ctx)
	spot := p.opts.Clock.NewTicker(p.opts.SpotInterval)
	onDemand := p.opts.Clock.NewTicker(p.opts.OnDemandInterval)
	types := p.opts.Clock.NewTicker(p.opts.TypesInterval)
	defer spot.Stop()
	defer onDemand.Stop()
	defer types.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-spot.C():
			p.logFailure(p.RefreshSpotPrices(ctx), "spot prices")
		case <-onDemand.C():
			p.logFailure(p.RefreshOnDemandPrices(ctx), "on-demand prices")
		case <-types.C():
			p.logFailure(p.RefreshInstanceTypes(ctx), "instance types and offerings")
		}
	}
}

// Refresh refreshes every source once, logging the ones that fail.
func (p *InstanceTypeProvider) Refresh(ctx context.Context) {
	p.logFailure(p.RefreshInstanceTypes(ctx), "instance types and offerings")
	p.logFailure(p.RefreshSpotPrices(ctx), "spot prices")
	p.logFailure(p.RefreshOnDemandPrices(ctx), "on-demand prices")
}

func (p *InstanceTypeProvider) logFailure(err error, what string) {
	if err != nil {
		p.opts.Log.Error(err, "refresh failed; keeping the previous data, else the snapshot", "source", what, "region", p.opts.Region, "snapshotDate", p.opts.Snapshot.DataDate)
	}
}

// RefreshInstanceTypes reads zones, instance types and their zonal offerings.
func (p *InstanceTypeProvider) RefreshInstanceTypes(ctx context.Context) error {
	azs, err := p.ec2.DescribeAvailabilityZones(ctx, &ec2.DescribeAvailabilityZonesInput{})
	if err != nil {
		return fmt.Errorf("describing availability zones: %w", err)
	}
	zoneNames, zoneIDs := catalog.ZoneNames{}, map[string]string{}
	for _, az := range azs.AvailabilityZones {
		if aws.ToString(az.ZoneType) != "" && aws.ToString(az.ZoneType) != "availability-zone" {
			continue // local and wavelength zones are opt-in and not planned into
		}
		zoneNames[aws.ToString(az.ZoneId)] = aws.ToString(az.ZoneName)
		zoneIDs[aws.ToString(az.ZoneName)] = aws.ToString(az.ZoneId)
	}
	specs := map[string]catalog.SnapshotType{}
	types := ec2.NewDescribeInstanceTypesPaginator(p.ec2, &ec2.DescribeInstanceTypesInput{MaxResults: aws.Int32(100)})
	for types.HasMorePages() {
		page, err := types.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("describing instance types: %w", err)
		}
		for _, info := range page.InstanceTypes {
			if spec, ok := specFromEC2(info); ok {
				specs[spec.Name] = spec
			}
		}
	}
	zones := map[string][]string{}
	offerings := ec2.NewDescribeInstanceTypeOfferingsPaginator(p.ec2, &ec2.DescribeInstanceTypeOfferingsInput{
		LocationType: ec2types.LocationTypeAvailabilityZone, MaxResults: aws.Int32(1000),
	})
	for offerings.HasMorePages() {
		page, err := offerings.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("describing instance type offerings: %w", err)
		}
		for _, o := range page.InstanceTypeOfferings {
			if id, ok := zoneIDs[aws.ToString(o.Location)]; ok {
				name := string(o.InstanceType)
				zones[name] = append(zones[name], id)
			}
		}
	}
	p.mu.Lock()
	p.zoneNames, p.specs, p.zones = zoneNames, specs, zones
	p.mu.Unlock()
	return p.rebuild()
}

// RefreshSpotPrices reads the latest Linux spot price of every type and zone.
func (p *InstanceTypeProvider) RefreshSpotPrices(ctx context.Context) error {
	prices := map[zoneKey]float64{}
	latest := map[zoneKey]time.Time{}
	history := ec2.NewDescribeSpotPriceHistoryPaginator(p.ec2, &ec2.DescribeSpotPriceHistoryInput{
		ProductDescriptions: []string{"Linux/UNIX"},
		StartTime:           aws.Time(p.opts.Clock.Now().Add(-time.Hour)),
		MaxResults:          aws.Int32(1000),
	})
	for history.HasMorePages() {
		page, err := history.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("describing spot price history: %w", err)
		}
		for _, sp := range page.SpotPriceHistory {
			price, err := strconv.ParseFloat(aws.ToString(sp.SpotPrice), 64)
			if err != nil || price <= 0 {
				continue
			}
			key := zoneKey{string(sp.InstanceType), aws.ToString(sp.AvailabilityZoneId)}
			if key.zoneID == "" {
				key.zoneID = p.zoneID(aws.ToString(sp.AvailabilityZone))
			}
			if ts := aws.ToTime(sp.Timestamp); ts.After(latest[key]) || latest[key].IsZero() {
				prices[key], latest[key] = price, ts
			}
		}
	}
	p.mu.Lock()
	p.spot = prices
	p.mu.Unlock()
	return p.rebuild()
}

// RefreshOnDemandPrices reads Linux shared-tenancy on-demand prices.
func (p *InstanceTypeProvider) RefreshOnDemandPrices(ctx context.Context) error {
	prices := map[string]float64{}
	filter := func(field, value string) pricingtypes.Filter {
		return pricingtypes.Filter{Field: aws.String(field), Type: pricingtypes.FilterTypeTermMatch, Value: aws.String(value)}
	}
	products := pricing.NewGetProductsPaginator(p.pricing, &pricing.GetProductsInput{
		ServiceCode: aws.String("AmazonEC2"),
		Filters: []pricingtypes.Filter{
			filter("regionCode", p.opts.Region), filter("operatingSystem", "Linux"),
			filter("preInstalledSw", "NA"), filter("tenancy", "Shared"), filter("capacitystatus", "Used"),
		},
		FormatVersion: aws.String("aws_v1"),
		MaxResults:    aws.Int32(100),
	})
	for products.HasMorePages() {
		page, err := products.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("getting on-demand prices: %w", err)
		}
		for _, doc := range page.PriceList {
			name, price, err := onDemandPrice(doc)
			if err != nil {
				p.opts.Log.V(1).Info("skipping an unreadable price document", "error", err.Error())
				continue
			}
			prices[name] = price
		}
	}
	if len(prices) == 0 {
		return fmt.Errorf("getting on-demand prices: no Linux prices for region %s", p.opts.Region)
	}
	p.mu.Lock()
	p.onDemand = prices
	p.mu.Unlock()
	return p.rebuild()
}

func (p *InstanceTypeProvider) zoneID(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, n := range p.zoneNames {
		if n == name {
			return id
		}
	}
	return ""
}

// rebuild merges live data over the snapshot and publishes a new catalog.
func (p *InstanceTypeProvider) rebuild() error {
	p.mu.Lock()
	region := p.opts.Region
	merged := &catalog.Snapshot{Source: p.opts.Snapshot.Source, DataDate: p.opts.Snapshot.DataDate}
	offline := map[string]catalog.SnapshotType{}
	for _, t := range p.opts.Snapshot.Types {
		if _, ok := t.Regions[region]; ok {
			offline[t.Name] = t
		}
	}
	names := make(map[string]bool, len(offline))
	if p.specs != nil {
		// Live types are authoritative for what exists in the region.
		for name := range p.specs {
			names[name] = true
		}
	} else {
		for name := range offline {
			names[name] = true
		}
	}
	// Sorted, so the same data always gives the same catalog (and plans).
	for _, name := range slices.Sorted(maps.Keys(names)) {
		spec, ok := p.specs[name]
		old, hasOld := offline[name]
		if !ok {
			spec = old
		}
		oldRegion := old.Regions[region]
		r := catalog.SnapshotRegion{ZoneIDs: oldRegion.ZoneIDs, Interruption: oldRegion.Interruption}
		if p.zones != nil {
			r.ZoneIDs = slices.Sorted(slices.Values(p.zones[name]))
		}
		if price, ok := p.onDemand[name]; ok {
			r.OnDemand = price
		} else {
			r.OnDemand = oldRegion.OnDemand
		}
		oldSpot := map[string]float64{}
		for i, id := range oldRegion.ZoneIDs {
			if i < len(oldRegion.Spot) {
				oldSpot[id] = oldRegion.Spot[i]
			}
		}
		spotCount := 0
		spot := make([]float64, len(r.ZoneIDs))
		for i, id := range r.ZoneIDs {
			if v, ok := p.spot[zoneKey{name, id}]; ok {
				spot[i] = v
			} else {
				spot[i] = oldSpot[id]
			}
			if spot[i] > 0 {
				spotCount++
			}
		}
		if spotCount == len(spot) && spotCount > 0 {
			r.Spot = spot
		} else if spotCount > 0 {
			// A zone without a price cannot be planned for spot; fill it with the
			// type's highest known price so the zone stays, priced cautiously.
			high := 0.0
			for _, v := range spot {
				high = math.Max(high, v)
			}
			for i := range spot {
				if spot[i] == 0 {
					spot[i] = high
				}
			}
			r.Spot = spot
		}
		if !hasOld && r.Spot != nil {
			r.Interruption = "" // unknown risk
		}
		if len(r.ZoneIDs) == 0 || (r.OnDemand == 0 && r.Spot == nil) {
			continue
		}
		spec.Regions = map[string]catalog.SnapshotRegion{region: r}
		merged.Types = append(merged.Types, spec)
	}
	zoneNames := p.zoneNames
	p.mu.Unlock()
	c, err := catalog.New(merged, region, zoneNames, p.opts.Unavailable)
	if err != nil {
		return fmt.Errorf("building the %s catalog: %w", region, err)
	}
	p.current.Store(c)
	return nil
}

// specFromEC2 converts DescribeInstanceTypes' answer to the catalog's specs.
func specFromEC2(info ec2types.InstanceTypeInfo) (catalog.SnapshotType, bool) {
	t := catalog.SnapshotType{Name: string(info.InstanceType), BareMetal: aws.ToBool(info.BareMetal)}
	if info.VCpuInfo == nil || info.MemoryInfo == nil || info.ProcessorInfo == nil || info.NetworkInfo == nil {
		return t, false
	}
	t.VCPU = aws.ToInt32(info.VCpuInfo.DefaultVCpus)
	t.MemoryMiB = aws.ToInt64(info.MemoryInfo.SizeInMiB)
	for _, a := range info.ProcessorInfo.SupportedArchitectures {
		switch a {
		case ec2types.ArchitectureTypeX8664:
			t.Arch = "amd64"
		case ec2types.ArchitectureTypeArm64:
			t.Arch = "arm64"
		}
		if t.Arch != "" {
			break
		}
	}
	if t.Arch == "" || t.VCPU == 0 || t.MemoryMiB == 0 {
		return t, false
	}
	t.Hypervisor = string(info.Hypervisor)
	t.CPUManufacturer = strings.ToLower(aws.ToString(info.ProcessorInfo.Manufacturer))
	t.ClockMHz = int32(math.Round(aws.ToFloat64(info.ProcessorInfo.SustainedClockSpeedInGhz) * 1000))
	t.NestedVirtualization = slices.Contains(info.ProcessorInfo.SupportedFeatures, ec2types.SupportedAdditionalProcessorFeatureNestedVirtualization)
	t.MaxENIs = aws.ToInt32(info.NetworkInfo.MaximumNetworkInterfaces)
	t.IPv4PerENI = aws.ToInt32(info.NetworkInfo.Ipv4AddressesPerInterface)
	t.EncryptionInTransit = info.NetworkInfo.EncryptionInTransitSupported
	for _, card := range info.NetworkInfo.NetworkCards {
		t.NetworkMbps += int64(math.Round(aws.ToFloat64(card.PeakBandwidthInGbps) * 1000))
	}
	t.NetworkCards = int32(len(info.NetworkInfo.NetworkCards))
	if e := info.NetworkInfo.EfaInfo; aws.ToBool(info.NetworkInfo.EfaSupported) && e != nil {
		t.EFAInterfaces = aws.ToInt32(e.MaximumEfaInterfaces)
	}
	if s := info.InstanceStorageInfo; s != nil && s.NvmeSupport != ec2types.EphemeralNvmeSupportUnsupported {
		t.LocalNVMeGB = aws.ToInt64(s.TotalSizeInGB)
	}
	if e := info.EbsInfo; e != nil && e.EbsOptimizedInfo != nil {
		t.EBSMbps = int64(aws.ToInt32(e.EbsOptimizedInfo.MaximumBandwidthInMbps))
	}
	if g := info.GpuInfo; g != nil && len(g.Gpus) > 0 {
		d := g.Gpus[0]
		t.GPU = &catalog.Accelerator{
			Count: aws.ToInt32(d.Count), Name: acceleratorName(aws.ToString(d.Name)),
			Manufacturer: strings.ToLower(aws.ToString(d.Manufacturer)),
		}
		if d.MemoryInfo != nil {
			t.GPU.MemoryMiB = int64(aws.ToInt32(d.MemoryInfo.SizeInMiB))
		}
	}
	if n := info.NeuronInfo; n != nil && len(n.NeuronDevices) > 0 {
		d := n.NeuronDevices[0]
		t.Accelerator = &catalog.Accelerator{Count: aws.ToInt32(d.Count), Name: acceleratorName(aws.ToString(d.Name)), Manufacturer: "aws"}
		if d.MemoryInfo != nil {
			t.Accelerator.MemoryMiB = int64(aws.ToInt32(d.MemoryInfo.SizeInMiB))
		}
	}
	return t, true
}

func acceleratorName(name string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(name), " ", "-"))
}

// priceDocument is the part of a Price List document that holds the price.
type priceDocument struct {
	Product struct {
		Attributes struct {
			InstanceType string `json:"instanceType"`
		} `json:"attributes"`
	} `json:"product"`
	Terms struct {
		OnDemand map[string]struct {
			PriceDimensions map[string]struct {
				Unit         string            `json:"unit"`
				PricePerUnit map[string]string `json:"pricePerUnit"`
			} `json:"priceDimensions"`
		} `json:"OnDemand"`
	} `json:"terms"`
}

// onDemandPrice reads the hourly USD price from a Price List document.
func onDemandPrice(doc string) (string, float64, error) {
	var d priceDocument
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return "", 0, fmt.Errorf("parsing price document: %w", err)
	}
	name := d.Product.Attributes.InstanceType
	for _, term := range d.Terms.OnDemand {
		for _, dim := range term.PriceDimensions {
			if dim.Unit != "Hrs" {
				continue
			}
			price, err := strconv.ParseFloat(dim.PricePerUnit["USD"], 64)
			if err == nil && price > 0 && name != "" {
				return name, price, nil
			}
		}
	}
	return "", 0, fmt.Errorf("no hourly USD price for %q", name)
}
