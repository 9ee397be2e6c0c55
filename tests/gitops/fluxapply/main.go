// fluxapply applies manifests and waits for them the way Flux's kustomize-controller does,
// with Flux's own libraries: server-side apply through github.com/fluxcd/pkg/ssa's
// ResourceManager (field manager kustomize-controller), health through its WaitForSet (kstatus).
// A test driver, not part of the operator.
//
//	fluxapply -kubeconfig FILE (-f FILE | -status-of FILE) [-wait 30s] [-interval 500ms]
//
// -f: the YAML to apply; -status-of: the objects to wait for and report instead (no apply).
// Prints one JSON object: what each object's apply did, WaitForSet's verdict, and what kstatus
// computes for each object afterwards, with the object it computed it from.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/utils"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

type applied struct {
	Subject string `json:"subject"`
	Action  string `json:"action"`
}

type objectStatus struct {
	Subject string         `json:"subject"`
	Status  string         `json:"status"`
	Message string         `json:"message"`
	Object  map[string]any `json:"object"` // as kstatus read it
}

type result struct {
	Applied []applied      `json:"applied"`
	Waited  bool           `json:"waited"`
	WaitErr *string        `json:"waitError"`
	Status  []objectStatus `json:"status"`
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	file := flag.String("f", "", "YAML manifests to apply")
	statusOf := flag.String("status-of", "", "YAML manifests whose status to read (default: -f)")
	wait := flag.Duration("wait", 0, "WaitForSet timeout (0: do not wait)")
	interval := flag.Duration("interval", 500*time.Millisecond, "WaitForSet poll interval")
	flag.Parse()
	if err := run(*kubeconfig, *file, *statusOf, *wait, *interval); err != nil {
		fmt.Fprintln(os.Stderr, "fluxapply:", err)
		os.Exit(1)
	}
}

func read(path string) ([]*unstructured.Unstructured, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return utils.ReadObjects(f)
}

func run(kubeconfig, file, statusOf string, wait, interval time.Duration) error {
	config, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	httpClient, err := rest.HTTPClientFor(config)
	if err != nil {
		return err
	}
	mapper, err := apiutil.NewDynamicRESTMapper(config, httpClient)
	if err != nil {
		return err
	}
	kube, err := client.New(config, client.Options{Mapper: mapper})
	if err != nil {
		return err
	}
	// As kustomize-controller builds its manager.
	poller := polling.NewStatusPoller(kube, mapper, polling.Options{})
	manager := ssa.NewResourceManager(kube, poller, ssa.Owner{
		Field: "kustomize-controller",
		Group: "kustomize.toolkit.fluxcd.io",
	})
	ctx := context.Background()
	out := result{Applied: []applied{}, Status: []objectStatus{}}

	var objects []*unstructured.Unstructured
	if file != "" {
		if objects, err = read(file); err != nil {
			return err
		}
		manager.SetOwnerLabels(objects, "apps", "flux-system")
		options := ssa.DefaultApplyOptions()
		// What kustomize-controller removes before its first apply: kubectl's ownership.
		options.Cleanup = ssa.ApplyCleanupOptions{
			Annotations: []string{"kubectl.kubernetes.io/last-applied-configuration"},
			FieldManagers: []ssa.FieldManager{
				{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationApply},
				{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationUpdate},
				{Name: "before-first-apply", OperationType: metav1.ManagedFieldsOperationUpdate},
			},
		}
		changes, err := manager.ApplyAllStaged(ctx, objects, options)
		if err != nil {
			return fmt.Errorf("apply: %w", err)
		}
		for _, entry := range changes.Entries {
			out.Applied = append(out.Applied, applied{entry.Subject, string(entry.Action)})
		}
	}
	if statusOf != "" {
		if objects, err = read(statusOf); err != nil {
			return err
		}
	}
	if wait > 0 {
		out.Waited = true
		set := object.UnstructuredSetToObjMetadataSet(objects)
		if err := manager.WaitForSetWithContext(ctx, set, ssa.WaitOptions{
			Interval: interval, Timeout: wait,
		}); err != nil {
			message := err.Error()
			out.WaitErr = &message
		}
	}
	// What kstatus computes now for each object: the function WaitForSet's poller applies to
	// a custom resource (its generic status reader).
	for _, desired := range objects {
		live := &unstructured.Unstructured{}
		live.SetGroupVersionKind(desired.GroupVersionKind())
		key := client.ObjectKeyFromObject(desired)
		if err := kube.Get(ctx, key, live); err != nil {
			return err
		}
		computed, err := status.Compute(live)
		if err != nil {
			return err
		}
		out.Status = append(out.Status, objectStatus{
			utils.FmtUnstructured(live), string(computed.Status), computed.Message, live.Object,
		})
	}
	encoded, err := json.Marshal(out)
	if err != nil {
		return err
	}
	fmt.Println(string(encoded))
	return nil
}
