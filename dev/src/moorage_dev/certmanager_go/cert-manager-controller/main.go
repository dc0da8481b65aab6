// Command cert-manager-controller runs cert-manager's controllers out of cluster against the
// local control plane that moorage-dev starts.
//
// cert-manager's own main lives in a nested module (cmd/controller) that the Go module proxy does
// not serve, so this file wires the controllers from the root module's public packages: each
// controller package registers its constructor in pkg/controller at init, the constructors share
// one ContextFactory, and the informer factories start once every controller has registered
// what it watches. No leader election: one process per control plane.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/klog/v2"

	controllerpkg "github.com/cert-manager/cert-manager/pkg/controller"
	"github.com/cert-manager/cert-manager/pkg/controller/acmechallenges"
	"github.com/cert-manager/cert-manager/pkg/controller/acmeorders"
	shimingresses "github.com/cert-manager/cert-manager/pkg/controller/certificate-shim/ingresses"
	cracme "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/acme"
	crapprover "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/approver"
	crca "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/ca"
	crselfsigned "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/selfsigned"
	crvault "github.com/cert-manager/cert-manager/pkg/controller/certificaterequests/vault"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/issuing"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/keymanager"
	certmetrics "github.com/cert-manager/cert-manager/pkg/controller/certificates/metrics"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/readiness"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/requestmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/revisionmanager"
	"github.com/cert-manager/cert-manager/pkg/controller/certificates/trigger"
	"github.com/cert-manager/cert-manager/pkg/controller/clusterissuers"
	"github.com/cert-manager/cert-manager/pkg/controller/issuers"
	logf "github.com/cert-manager/cert-manager/pkg/logs"
	"github.com/cert-manager/cert-manager/pkg/util"

	// Issuer implementations register themselves with the issuer factory that the Issuer and
	// ClusterIssuer controllers use to judge readiness.
	_ "github.com/cert-manager/cert-manager/pkg/issuer/acme"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/ca"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/selfsigned"
	_ "github.com/cert-manager/cert-manager/pkg/issuer/vault"
)

// defaultControllers are the controllers cert-manager enables unless told otherwise (the
// Gateway API shim and the experimental CertificateSigningRequest controllers stay off), less
// Venafi: the Go module proxy refuses the vcert module its issuer needs.
var defaultControllers = []string{
	issuers.ControllerName,
	clusterissuers.ControllerName,
	certmetrics.ControllerName,
	shimingresses.ControllerName,
	acmeorders.ControllerName,
	acmechallenges.ControllerName,
	cracme.CRControllerName,
	crapprover.ControllerName,
	crca.CRControllerName,
	crselfsigned.CRControllerName,
	crvault.CRControllerName,
	trigger.ControllerName,
	issuing.ControllerName,
	keymanager.ControllerName,
	requestmanager.ControllerName,
	readiness.ControllerName,
	revisionmanager.ControllerName,
}

type options struct {
	kubeconfig               string
	clusterResourceNamespace string
	namespace                string
	controllers              string
	workers                  int
	version                  bool
}

func parseOptions() options {
	var o options
	flag.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the control plane (required)")
	flag.StringVar(&o.clusterResourceNamespace, "cluster-resource-namespace", "kube-system",
		"namespace holding the Secrets of ClusterIssuers")
	flag.StringVar(&o.namespace, "namespace", "", "watch only this namespace (default: all)")
	flag.StringVar(&o.controllers, "controllers", strings.Join(defaultControllers, ","),
		"comma-separated controllers to run")
	flag.IntVar(&o.workers, "concurrent-workers", 5, "workers per controller")
	flag.BoolVar(&o.version, "version", false, "print the version and exit")
	klog.InitFlags(flag.CommandLine)
	flag.Parse()
	return o
}

func contextOptions(o options) controllerpkg.ContextOptions {
	return controllerpkg.ContextOptions{
		Kubeconfig:         o.kubeconfig,
		KubernetesAPIQPS:   20,
		KubernetesAPIBurst: 50,
		Namespace:          o.namespace,
		IssuerOptions: controllerpkg.IssuerOptions{
			ClusterResourceNamespace:        o.clusterResourceNamespace,
			ClusterIssuerAmbientCredentials: true,
		},
		ACMEOptions: controllerpkg.ACMEOptions{
			HTTP01SolverImage:                 "quay.io/jetstack/cert-manager-acmesolver:" + util.AppVersion,
			HTTP01SolverResourceRequestCPU:    resource.MustParse("10m"),
			HTTP01SolverResourceRequestMemory: resource.MustParse("64Mi"),
			HTTP01SolverResourceLimitsCPU:     resource.MustParse("100m"),
			HTTP01SolverResourceLimitsMemory:  resource.MustParse("64Mi"),
			ACMEHTTP01SolverRunAsNonRoot:      true,
			DNS01CheckRetryPeriod:             10 * time.Second,
		},
		IngressShimOptions: controllerpkg.IngressShimOptions{
			DefaultIssuerKind:                 "Issuer",
			DefaultIssuerGroup:                "cert-manager.io",
			DefaultAutoCertificateAnnotations: []string{"kubernetes.io/tls-acme"},
			GatewayAPIExtraProtocols:          sets.New[string](),
		},
		CertificateOptions: controllerpkg.CertificateOptions{
			CertificateRequestMinimumBackoffDuration: time.Hour,
			CertificateRequestMaximumBackoffDuration: 32 * time.Hour,
		},
		SchedulerOptions: controllerpkg.SchedulerOptions{MaxConcurrentChallenges: 60},
	}
}

func run(ctx context.Context, o options) error {
	log := logf.FromContext(ctx)
	enabled := strings.Split(o.controllers, ",")
	known := controllerpkg.Known()
	for _, name := range enabled {
		if _, ok := known[name]; !ok {
			return fmt.Errorf("unknown controller %q", name)
		}
	}
	factory, err := controllerpkg.NewContextFactory(ctx, contextOptions(o))
	if err != nil {
		return err
	}
	// Every controller's constructor registers its informers on the shared factories, so they
	// start only after all of them are built.
	shared, err := factory.Build()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(enabled))
	slices.Sort(enabled)
	for _, name := range enabled {
		ctrl, err := known[name](factory)
		if err != nil {
			return fmt.Errorf("building controller %s: %w", name, err)
		}
		log.Info("starting controller", "controller", name)
		wg.Go(func() {
			if err := ctrl.Run(o.workers, ctx); err != nil {
				errs <- fmt.Errorf("controller %s: %w", name, err)
			}
		})
	}
	shared.KubeSharedInformerFactory.Start(ctx.Done())
	shared.SharedInformerFactory.Start(ctx.Done())
	shared.HTTP01ResourceMetadataInformersFactory.Start(ctx.Done())
	wg.Wait()
	close(errs)
	return <-errs
}

func main() {
	o := parseOptions()
	if o.version {
		fmt.Printf("cert-manager-controller %s\n", util.AppVersion)
		return
	}
	if o.kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "--kubeconfig is required")
		os.Exit(2)
	}
	logf.InitLogs()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx = logf.NewContext(ctx, logf.Log, "controller")
	if err := run(ctx, o); err != nil {
		logf.Log.Error(err, "cert-manager controller failed")
		logf.FlushLogs()
		os.Exit(1)
	}
	logf.FlushLogs()
}
