// Command catalog-snapshot writes pkg/catalog/data/snapshot.json, the offline
// instance catalog, from the ec2instances.info data carried by the Go module
// github.com/cristim/ec2-instances-info (MIT). It is run by hand when the data
// should be refreshed, and its output is committed; the module is never a
// dependency of nodewright itself (its JSON is ~96 MB).
//
//	go run ./hack/catalog-snapshot -in $(go env GOMODCACHE)/github.com/cristim/ec2-instances-info@VERSION/data/instances.json -date 2025-05-28
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/nodewright/nodewright/pkg/catalog"
)

// source is one entry of instances.json, the fields we use.
type source struct {
	InstanceType       string              `json:"instance_type"`
	VCPU               int32               `json:"vCPU"`
	Memory             float64             `json:"memory"` // GiB
	Arch               []string            `json:"arch"`
	GPU                int32               `json:"GPU"`
	GPUModel           *string             `json:"GPU_model"`
	GPUMemory          float64             `json:"GPU_memory"` // GiB, all devices
	PhysicalProcessor  string              `json:"physical_processor"`
	ClockSpeed         string              `json:"clock_speed_ghz"`
	NetworkPerformance string              `json:"network_performance"`
	EBSMaxBandwidth    float64             `json:"ebs_max_bandwidth"` // Mbps
	EBSAsNVMe          bool                `json:"ebs_as_nvme"`
	AvailabilityZones  map[string][]string `json:"availability_zones"`
	VPC                *struct {
		MaxENIs   int32 `json:"max_enis"`
		IPsPerENI int32 `json:"ips_per_eni"`
	} `json:"vpc"`
	Storage *struct {
		Devices int64   `json:"devices"`
		Size    float64 `json:"size"`
		Unit    string  `json:"size_unit"`
		NVMe    bool    `json:"nvme_ssd"`
	} `json:"storage"`
	Pricing map[string]struct {
		Linux *struct {
			OnDemand     string   `json:"ondemand"`
			Spot         []string `json:"spot"`
			PctInterrupt string   `json:"pct_interrupt"`
		} `json:"linux"`
	} `json:"pricing"`
}

func main() {
	in := flag.String("in", "", "path of ec2instances.info instances.json")
	out := flag.String("out", "pkg/catalog/data/snapshot.json", "where to write the snapshot")
	date := flag.String("date", "", "date the data was collected, YYYY-MM-DD (the module version's date)")
	flag.Parse()
	if *in == "" || !regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`).MatchString(*date) {
		fmt.Fprintln(os.Stderr, "usage: catalog-snapshot -in instances.json -date YYYY-MM-DD [-out file]")
		os.Exit(2)
	}
	if err := run(*in, *out, *date); err != nil {
		fmt.Fprintf(os.Stderr, "catalog-snapshot: %v\n", err)
		os.Exit(1)
	}
}

func run(in, out, date string) error {
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	var entries []source
	if err := json.Unmarshal(raw, &entries); err != nil {
		return fmt.Errorf("parsing %s: %w", in, err)
	}
	snap := catalog.Snapshot{Source: "ec2instances.info via github.com/cristim/ec2-instances-info", DataDate: date}
	skipped := 0
	for _, e := range entries {
		t, ok := convert(e)
		if !ok {
			skipped++
			continue
		}
		snap.Types = append(snap.Types, t)
	}
	sort.Slice(snap.Types, func(i, j int) bool { return snap.Types[i].Name < snap.Types[j].Name })

	// One type per line: small diffs when the data is refreshed.
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "{\"source\":%q,\"dataDate\":%q,\"types\":[\n", snap.Source, snap.DataDate)
	for i, t := range snap.Types {
		var line bytes.Buffer
		enc := json.NewEncoder(&line)
		enc.SetEscapeHTML(false) // keep "<5%" readable
		if err := enc.Encode(t); err != nil {
			return err
		}
		buf.Write(bytes.TrimSuffix(line.Bytes(), []byte("\n")))
		if i < len(snap.Types)-1 {
			buf.WriteByte(',')
		}
		buf.WriteByte('\n')
	}
	buf.WriteString("]}\n")
	if _, err := catalog.DecodeSnapshot(buf.Bytes()); err != nil {
		return fmt.Errorf("generated snapshot does not decode: %w", err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %s: %d types (%d without zones or prices skipped), %d bytes\n", out, len(snap.Types), skipped, buf.Len())
	return nil
}

// convert keeps the fields nodewright uses and the regions where the type has
// known zones and a Linux price.
func convert(e source) (catalog.SnapshotType, bool) {
	t := catalog.SnapshotType{
		Name:        e.InstanceType,
		VCPU:        e.VCPU,
		MemoryMiB:   int64(e.Memory*1024 + 0.5),
		Arch:        arch(e.Arch),
		NetworkMbps: networkMbps(e.NetworkPerformance),
		EBSMbps:     int64(e.EBSMaxBandwidth),
		BareMetal:   strings.HasSuffix(e.InstanceType, ".metal") || strings.Contains(e.InstanceType, ".metal-"),
		Regions:     map[string]catalog.SnapshotRegion{},
	}
	if t.Arch == "" || t.VCPU == 0 || t.MemoryMiB == 0 || e.VPC == nil {
		return t, false
	}
	t.MaxENIs, t.IPv4PerENI = e.VPC.MaxENIs, e.VPC.IPsPerENI
	eit := encryptsInTransit(e.InstanceType)
	t.EncryptionInTransit = &eit
	t.NetworkCards = networkCards[e.InstanceType]
	if efaTypes[e.InstanceType] {
		t.EFAInterfaces = max(t.NetworkCards, 1)
	}
	// EBS exposed as NVMe is a Nitro property; bare metal has no hypervisor.
	switch {
	case t.BareMetal:
	case e.EBSAsNVMe:
		t.Hypervisor = "nitro"
	default:
		t.Hypervisor = "xen"
	}
	t.CPUManufacturer = cpuManufacturer(e.PhysicalProcessor)
	if ghz, err := strconv.ParseFloat(strings.TrimSuffix(e.ClockSpeed, " GHz"), 64); err == nil {
		t.ClockMHz = int32(ghz*1000 + 0.5)
	}
	if e.GPU > 0 && e.GPUModel != nil {
		acc := &catalog.Accelerator{Count: e.GPU, MemoryMiB: int64(e.GPUMemory * 1024 / float64(e.GPU))}
		model := *e.GPUModel
		if strings.HasPrefix(model, "AWS ") {
			acc.Manufacturer = "aws"
			acc.Name = strings.ToLower(strings.TrimPrefix(model, "AWS "))
			t.Accelerator = acc
		} else {
			mfr, name, _ := strings.Cut(model, " ")
			acc.Manufacturer = strings.ToLower(mfr)
			acc.Name = strings.ToLower(strings.ReplaceAll(name, " ", "-"))
			t.GPU = acc
		}
	}
	if s := e.Storage; s != nil && s.NVMe {
		size := s.Size * float64(s.Devices)
		if s.Unit == "TB" {
			size *= 1000
		}
		t.LocalNVMeGB = int64(size)
	}
	for region, zones := range e.AvailabilityZones {
		p, ok := e.Pricing[region]
		if !ok || p.Linux == nil || len(zones) == 0 {
			continue
		}
		r := catalog.SnapshotRegion{ZoneIDs: append([]string(nil), zones...), Interruption: p.Linux.PctInterrupt}
		sort.Strings(r.ZoneIDs)
		r.OnDemand, _ = strconv.ParseFloat(p.Linux.OnDemand, 64)
		// The data gives one spot price per zone but not which zone; they are
		// assigned in zone-id order (designs/catalog.md). Live spot history
		// replaces them with the real per-zone prices.
		if len(p.Linux.Spot) == len(r.ZoneIDs) {
			for _, s := range p.Linux.Spot {
				v, err := strconv.ParseFloat(s, 64)
				if err != nil || v <= 0 {
					r.Spot = nil
					break
				}
				r.Spot = append(r.Spot, v)
			}
		}
		if r.OnDemand == 0 && len(r.Spot) == 0 {
			continue
		}
		if len(r.Spot) == 0 {
			r.Interruption = ""
		}
		t.Regions[region] = r
	}
	return t, len(t.Regions) > 0
}

func arch(a []string) string {
	for _, v := range a {
		switch v {
		case "x86_64":
			return "amd64"
		case "arm64":
			return "arm64"
		}
	}
	return ""
}

func cpuManufacturer(processor string) string {
	p := strings.ToLower(processor)
	switch {
	case strings.Contains(p, "intel"):
		return "intel"
	case strings.Contains(p, "amd"):
		return "amd"
	case strings.Contains(p, "graviton"), strings.Contains(p, "aws"):
		return "aws"
	case strings.Contains(p, "apple"):
		return "apple"
	}
	return ""
}

var gigabit = regexp.MustCompile(`([0-9.]+) Gigabit`)

// networkMbps reads "Up to 10 Gigabit" or "3200 Gigabit" as megabits per second;
// the old Low/Moderate/High classes give 0 (unknown).
func networkMbps(perf string) int64 {
	m := gigabit.FindStringSubmatch(perf)
	if m == nil {
		return 0
	}
	g, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0
	}
	return int64(g * 1000)
}

// encryptsInTransitFamilies are the families that encrypt traffic between
// instances in hardware, as the EC2 user guide lists them (data protection,
// encryption in transit), and the u-* high-memory types. ec2instances.info
// has no such field; DescribeInstanceTypes has (NetworkInfo
// EncryptionInTransitSupported), and replaces this at run time.
var encryptsInTransitFamilies = map[string]bool{
	"c5a": true, "c5ad": true, "c5n": true, "c6a": true, "c6gn": true, "c6i": true, "c6id": true, "c6in": true, "c7a": true, "c7g": true, "c7gd": true, "c7gn": true, "c7i": true, "c7i-flex": true,
	"c8g": true, "c8gd": true, "c8i": true, "d3": true, "d3en": true, "dl1": true, "dl2q": true, "f2": true, "g4ad": true, "g4dn": true, "g5": true, "g6": true, "g6e": true, "gr6": true, "hpc6a": true,
	"hpc6id": true, "hpc7a": true, "hpc7g": true, "i3en": true, "i4g": true, "i4i": true, "i7i": true, "i7ie": true, "i8g": true, "im4gn": true, "inf1": true, "inf2": true, "is4gen": true,
	"m5dn": true, "m5n": true, "m5zn": true, "m6a": true, "m6i": true, "m6id": true, "m6idn": true, "m6in": true, "m7a": true, "m7g": true, "m7gd": true, "m7i": true, "m7i-flex": true, "m8g": true,
	"m8gd": true, "m8i": true, "p3dn": true, "p4d": true, "p4de": true, "p5": true, "p5e": true, "p5en": true, "r5dn": true, "r5n": true, "r6a": true, "r6i": true, "r6id": true, "r6idn": true, "r6in": true,
	"r7a": true, "r7g": true, "r7gd": true, "r7i": true, "r7iz": true, "r8g": true, "r8gd": true, "r8i": true, "trn1": true, "trn1n": true, "trn2": true, "vt1": true, "x2idn": true, "x2iedn": true,
	"x2iezn": true, "x8g": true,
}

func encryptsInTransit(instanceType string) bool {
	family, _, _ := strings.Cut(instanceType, ".")
	return encryptsInTransitFamilies[family] || strings.HasPrefix(family, "u-") || strings.HasPrefix(family, "u7")
}

// efaTypes are the instance types that take an Elastic Fabric Adapter, as
// the EC2 user guide lists them (Elastic Fabric Adapter, supported instance
// types). ec2instances.info has no such field; DescribeInstanceTypes has
// (NetworkInfo EfaSupported, EfaInfo), and replaces this at run time. Each
// takes one EFA per network card.
var efaTypes = func() map[string]bool {
	out := map[string]bool{}
	for _, family := range []struct {
		name  string
		sizes string
	}{
		{"c5n", "9xlarge 18xlarge metal"}, {"c6a", "48xlarge metal"}, {"c6gn", "16xlarge"}, {"c6i", "32xlarge metal"},
		{"c6id", "32xlarge metal"}, {"c6in", "32xlarge metal"}, {"c7a", "48xlarge metal-48xl"}, {"c7g", "16xlarge metal"},
		{"c7gd", "16xlarge metal"}, {"c7gn", "16xlarge metal"}, {"c7i", "48xlarge metal-48xl"}, {"c8g", "24xlarge 48xlarge metal-24xl metal-48xl"},
		{"m5dn", "24xlarge metal"}, {"m5n", "24xlarge metal"}, {"m5zn", "12xlarge metal"}, {"m6a", "48xlarge metal"},
		{"m6i", "32xlarge metal"}, {"m6id", "32xlarge metal"}, {"m6idn", "32xlarge metal"}, {"m6in", "32xlarge metal"},
		{"m7a", "48xlarge metal-48xl"}, {"m7g", "16xlarge metal"}, {"m7gd", "16xlarge metal"}, {"m7i", "48xlarge metal-48xl"},
		{"m8g", "24xlarge 48xlarge metal-24xl metal-48xl"},
		{"r5dn", "24xlarge metal"}, {"r5n", "24xlarge metal"}, {"r6a", "48xlarge metal"}, {"r6i", "32xlarge metal"},
		{"r6id", "32xlarge metal"}, {"r6idn", "32xlarge metal"}, {"r6in", "32xlarge metal"}, {"r7a", "48xlarge metal-48xl"},
		{"r7g", "16xlarge metal"}, {"r7gd", "16xlarge metal"}, {"r7i", "48xlarge metal-48xl"}, {"r7iz", "32xlarge metal-32xl"},
		{"r8g", "24xlarge 48xlarge metal-24xl metal-48xl"}, {"x2idn", "32xlarge metal"}, {"x2iedn", "32xlarge metal"}, {"x2iezn", "12xlarge metal"},
		{"i3en", "12xlarge 24xlarge metal"}, {"i4g", "16xlarge"}, {"i4i", "32xlarge metal"}, {"im4gn", "16xlarge"},
		{"dl1", "24xlarge"}, {"g4dn", "8xlarge 12xlarge 16xlarge metal"}, {"g5", "8xlarge 12xlarge 16xlarge 24xlarge 48xlarge"},
		{"g6", "8xlarge 12xlarge 16xlarge 24xlarge 48xlarge"}, {"g6e", "8xlarge 12xlarge 16xlarge 24xlarge 48xlarge"},
		{"inf1", "24xlarge"}, {"p3dn", "24xlarge"}, {"p4d", "24xlarge"}, {"p4de", "24xlarge"}, {"p5", "48xlarge"},
		{"p5e", "48xlarge"}, {"p5en", "48xlarge"}, {"trn1", "32xlarge"}, {"trn1n", "32xlarge"}, {"trn2", "48xlarge"},
		{"vt1", "24xlarge"}, {"hpc6a", "48xlarge"}, {"hpc6id", "32xlarge"}, {"hpc7a", "12xlarge 24xlarge 48xlarge 96xlarge"},
		{"hpc7g", "4xlarge 8xlarge 16xlarge"},
	} {
		for _, size := range strings.Fields(family.sizes) {
			out[family.name+"."+size] = true
		}
	}
	return out
}()

// networkCards are the types with more than one network card and how many,
// as the EC2 user guide's network cards table lists them; every other type
// has one.
var networkCards = map[string]int32{
	"c6in.32xlarge": 2, "c6in.metal": 2, "m6idn.32xlarge": 2, "m6idn.metal": 2, "m6in.32xlarge": 2, "m6in.metal": 2,
	"r6idn.32xlarge": 2, "r6idn.metal": 2, "r6in.32xlarge": 2, "r6in.metal": 2, "hpc6id.32xlarge": 2,
	"hpc7a.12xlarge": 2, "hpc7a.24xlarge": 2, "hpc7a.48xlarge": 2, "hpc7a.96xlarge": 2,
	"dl1.24xlarge": 4, "p4d.24xlarge": 4, "p4de.24xlarge": 4, "trn1.32xlarge": 8, "trn1n.32xlarge": 16,
	"trn2.48xlarge": 16, "p5.48xlarge": 32, "p5e.48xlarge": 32, "p5en.48xlarge": 16,
}
