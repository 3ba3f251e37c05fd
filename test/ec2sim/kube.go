package ec2sim

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"

	awsv1 "github.com/nodewright/nodewright/apis/aws/v1"
	"github.com/nodewright/nodewright/pkg/catalog"
)

// KwokNodeAnnotation marks a Node as kwok's to run: kwok keeps its status and
// heartbeat as a kubelet would.
const KwokNodeAnnotation = "kwok.x-k8s.io/node"

// NodeBridge plays the kubelets of the simulator's instances against a real
// apiserver: when an instance starts running it registers the Node an EKS
// node would (named after the private DNS name, with the provider ID, the
// well-known labels, the labels, taints and pod limit its user data asks for,
// and the instance type's capacity), handed to kwok to keep Ready; when the
// instance terminates it deletes the Node, as the cloud node lifecycle
// controller does. The autoscaler under test then sees what it would see on
// EKS without anyone creating Nodes by hand.
type NodeBridge struct {
	sim  *Server
	kube client.Client
	log  logr.Logger

	mu     sync.Mutex
	nodes  map[string]nodeRef // instance id -> its Node
	cancel context.CancelFunc
	done   chan struct{}
}

// nodeRef names an instance's Node and the provider ID that proves it is its.
type nodeRef struct{ name, providerID string }

// NodeBridgeOptions configure a NodeBridge.
type NodeBridgeOptions struct {
	// Log receives the Nodes registered and deleted and the errors retried;
	// default discards them.
	Log logr.Logger
}

// NewNodeBridge returns a bridge from sim's instances to Nodes through kube.
func NewNodeBridge(sim *Server, kube client.Client, opts NodeBridgeOptions) *NodeBridge {
	log := opts.Log
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	return &NodeBridge{sim: sim, kube: kube, log: log, nodes: map[string]nodeRef{}}
}

// Start registers Nodes for the instances already running, then follows the
// simulator's events in the background until ctx ends or Stop. Failed API
// calls are retried with backoff. Start returns at once; it fails only when
// the bridge was started before.
func (b *NodeBridge) Start(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cancel != nil {
		return errors.New("node bridge: already started")
	}
	ctx, b.cancel = context.WithCancel(ctx)
	b.done = make(chan struct{})
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "ec2sim-node-bridge"})
	// Watch before listing, so no instance falls between the two.
	events := b.sim.Watch(ctx)
	for _, in := range b.sim.Instances() {
		b.rememberLocked(in)
		queue.Add(in.ID)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		defer queue.ShutDown()
		for ev := range events {
			b.mu.Lock()
			b.rememberLocked(ev.Instance)
			b.mu.Unlock()
			queue.Add(ev.Instance.ID)
		}
	}()
	go func() {
		defer wg.Done()
		for b.processNext(ctx, queue) {
		}
	}()
	go func() {
		wg.Wait()
		close(b.done)
	}()
	return nil
}

// Stop ends the bridge and waits for it; Nodes it registered stay.
func (b *NodeBridge) Stop() {
	b.mu.Lock()
	cancel, done := b.cancel, b.done
	b.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (b *NodeBridge) rememberLocked(in Instance) {
	if in.PrivateDNSName != "" {
		b.nodes[in.ID] = nodeRef{in.PrivateDNSName, providerID(in)}
	}
}

func (b *NodeBridge) processNext(ctx context.Context, queue workqueue.TypedRateLimitingInterface[string]) bool {
	id, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(id)
	if err := b.sync(ctx, id); err != nil && ctx.Err() == nil {
		b.log.Error(err, "syncing the node of an instance, will retry", "instance", id)
		queue.AddRateLimited(id)
		return true
	}
	queue.Forget(id)
	return true
}

// sync makes the Node match the instance: present while it runs, gone once it
// is terminated. Between the two (pending, shutting down) nothing changes, as
// a kubelet registers only after boot and its Node outlives the shutdown.
func (b *NodeBridge) sync(ctx context.Context, id string) error {
	in, exists := b.sim.Instance(id)
	switch {
	case exists && in.State == StateRunning:
		return b.register(ctx, in)
	case !exists || in.State == StateTerminated:
		b.mu.Lock()
		ref, known := b.nodes[id]
		b.mu.Unlock()
		if !known {
			return nil
		}
		if err := b.deregister(ctx, ref); err != nil {
			return err
		}
		b.mu.Lock()
		delete(b.nodes, id)
		b.mu.Unlock()
	}
	return nil
}

func (b *NodeBridge) register(ctx context.Context, in Instance) error {
	node, err := b.sim.kubeletNode(in)
	if err != nil {
		// A kubelet whose user data cannot be read never starts: no Node.
		b.log.Error(err, "instance's user data is unreadable, its node will not register", "instance", in.ID)
		return nil
	}
	if err := b.kube.Create(ctx, node); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil
		}
		return fmt.Errorf("registering node %s for %s: %w", node.Name, in.ID, err)
	}
	b.log.Info("registered node", "node", node.Name, "instance", in.ID, "instanceType", in.InstanceType)
	return nil
}

// deregister deletes the instance's Node, unless a Node of that name belongs
// to another instance.
func (b *NodeBridge) deregister(ctx context.Context, ref nodeRef) error {
	node := &corev1.Node{}
	if err := b.kube.Get(ctx, client.ObjectKey{Name: ref.name}, node); err != nil {
		return client.IgnoreNotFound(err)
	}
	if node.Spec.ProviderID != ref.providerID {
		return nil
	}
	if err := b.kube.Delete(ctx, node, client.Preconditions{UID: &node.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting node %s: %w", ref.name, err)
	}
	b.log.Info("deleted node of terminated instance", "node", ref.name, "providerID", ref.providerID)
	return nil
}

// providerID is the cloud provider's id of an instance, as the AWS cloud
// controller manager sets it.
func providerID(in Instance) string { return fmt.Sprintf("aws:///%s/%s", in.Zone, in.ID) }

// kubeletNode is the Node the instance's kubelet registers.
func (s *Server) kubeletNode(in Instance) (*corev1.Node, error) {
	spec, ok := s.types[in.InstanceType]
	if !ok {
		return nil, fmt.Errorf("instance type %s is not in the catalog", in.InstanceType)
	}
	reg := KubeletRegistration{Labels: map[string]string{}}
	if in.UserData != "" {
		text, err := LaunchTemplateData{UserData: in.UserData}.DecodedUserData()
		if err != nil {
			return nil, fmt.Errorf("decoding user data: %w", err)
		}
		if reg, err = ParseKubeletRegistration(text); err != nil {
			return nil, err
		}
	}
	name := in.PrivateDNSName
	// The kubelet reports the OS its image runs, and on Windows its build.
	os := "linux"
	image, _ := s.image(in.ImageID)
	if image.Platform == "windows" {
		os = "windows"
	}
	labels := map[string]string{
		corev1.LabelHostname:                in.PrivateDNSName,
		corev1.LabelArchStable:              spec.Arch,
		corev1.LabelOSStable:                os,
		"beta.kubernetes.io/arch":           spec.Arch,
		"beta.kubernetes.io/os":             os,
		corev1.LabelInstanceTypeStable:      in.InstanceType,
		corev1.LabelInstanceType:            in.InstanceType,
		corev1.LabelTopologyRegion:          s.scenario.Region,
		corev1.LabelTopologyZone:            in.Zone,
		corev1.LabelFailureDomainBetaRegion: s.scenario.Region,
		corev1.LabelFailureDomainBetaZone:   in.Zone,
		awsv1.LabelTopologyZoneID:           in.ZoneID,
	}
	if image.WindowsBuild != "" {
		labels[corev1.LabelWindowsBuild] = image.WindowsBuild
	}
	// The kubelet lets --node-labels overwrite its defaults.
	for k, v := range reg.Labels {
		labels[k] = v
	}
	spec.EFADevices = in.EFAInterfaces // the EFA device plugin's count
	capacity, allocatable := spec.Resources(catalog.NodeSettings{MaxPods: reg.MaxPods})
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      labels,
			Annotations: map[string]string{KwokNodeAnnotation: "fake"},
		},
		Spec: corev1.NodeSpec{ProviderID: providerID(in), Taints: reg.Taints},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: allocatable,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: in.PrivateIP},
				{Type: corev1.NodeInternalDNS, Address: in.PrivateDNSName},
				{Type: corev1.NodeHostName, Address: in.PrivateDNSName},
			},
			NodeInfo: corev1.NodeSystemInfo{Architecture: spec.Arch, OperatingSystem: os},
		},
	}, nil
}
