package main

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

// The environment variable the gateway's config reads its storage URL from.
const dbURLEnv = "GATEWAY_DB_URL"

// checkGateway checks the promises of deploy/helm/gateway on top of the API's rules:
//   - `gateway serve` has a liveness probe on /healthz and a readiness probe on /readyz,
//     both on the port it declares;
//   - every container of every workload runs as non-root, cannot escalate, drops every
//     capability and has a read-only root filesystem;
//   - exactly one Job runs `gateway db migrate`, as a pre-install and pre-upgrade hook,
//     with GATEWAY_DB_URL from the owner role's Secret; `serve` and `worker` take it from
//     the app role's Secret, which is another Secret (or another key).
func checkGateway(docs []*Document, ownerSecret, appSecret string) []string {
	var problems []string
	report := func(d *Document, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s: %s", d, fmt.Sprintf(format, args...)))
	}
	var migrations, servers []*Document
	var ownerRefs, appRefs []*corev1.SecretKeySelector
	for _, d := range docs {
		var spec *corev1.PodSpec
		switch o := d.Object.(type) {
		case *appsv1.Deployment:
			spec = &o.Spec.Template.Spec
		case *batchv1.Job:
			spec = &o.Spec.Template.Spec
		default:
			continue
		}
		checkHardened(d, spec, report)
		all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
		migrating := false
		for i := range all {
			c := &all[i]
			switch gatewayCommand(c) {
			case "serve":
				servers = append(servers, d)
				checkProbes(d, c, report)
				appRefs = append(appRefs, dbSecret(d, c, report))
			case "worker":
				appRefs = append(appRefs, dbSecret(d, c, report))
			case "db migrate":
				migrating = true
				migrations = append(migrations, d)
				if _, isJob := d.Object.(*batchv1.Job); !isJob {
					report(d, "container %q runs `gateway db migrate` outside a Job", c.Name)
				}
				checkHook(d, report)
			}
		}
		if migrating {
			// Every step of the migration Job that connects does so as the owner.
			for i := range all {
				if hasEnv(&all[i], dbURLEnv) {
					ownerRefs = append(ownerRefs, dbSecret(d, &all[i], report))
				}
			}
		}
	}
	if len(servers) == 0 {
		problems = append(problems, "no Deployment runs `gateway serve`")
	}
	if len(migrations) != 1 {
		problems = append(problems, fmt.Sprintf("expected one Job running `gateway db migrate`, found %d", len(migrations)))
	}
	for _, owner := range ownerRefs {
		if owner == nil {
			continue
		}
		if ownerSecret != "" && owner.Name != ownerSecret {
			problems = append(problems, fmt.Sprintf("the migration uses Secret %q, not the owner's %q", owner.Name, ownerSecret))
		}
		for _, app := range appRefs {
			if app != nil && app.Name == owner.Name && app.Key == owner.Key {
				problems = append(problems, fmt.Sprintf(
					"serving and migrating share Secret %s key %s: the gateway would run as the owner role",
					owner.Name, owner.Key))
			}
		}
	}
	for _, app := range appRefs {
		if app != nil && appSecret != "" && app.Name != appSecret {
			problems = append(problems, fmt.Sprintf("a serving workload uses Secret %q, not the app role's %q", app.Name, appSecret))
		}
	}
	return problems
}

// gatewayCommand is what a container runs of the gateway CLI: "serve", "worker",
// "db migrate", or "" for anything else (the OPA sidecar).
func gatewayCommand(c *corev1.Container) string {
	argv := append(append([]string{}, c.Command...), c.Args...)
	if len(argv) < 2 || argv[0] != "gateway" {
		return ""
	}
	if argv[1] == "db" && len(argv) > 2 {
		return "db " + argv[2]
	}
	return argv[1]
}

func checkProbes(d *Document, c *corev1.Container, report reporter) {
	want := map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe}
	for path, probe := range want {
		kind := "livenessProbe"
		if path == "/readyz" {
			kind = "readinessProbe"
		}
		if probe == nil || probe.HTTPGet == nil {
			report(d, "container %q: %s must be an httpGet on %s", c.Name, kind, path)
			continue
		}
		if probe.HTTPGet.Path != path {
			report(d, "container %q: %s asks %q, not %s", c.Name, kind, probe.HTTPGet.Path, path)
		}
	}
}

func checkHardened(d *Document, spec *corev1.PodSpec, report reporter) {
	pod := spec.SecurityContext
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		report(d, "the pod mounts a service account token; the gateway needs none")
	}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for _, c := range all {
		sc := c.SecurityContext
		if sc == nil {
			sc = &corev1.SecurityContext{}
		}
		nonRoot := sc.RunAsNonRoot
		if nonRoot == nil {
			nonRoot = pod.RunAsNonRoot
		}
		if nonRoot == nil || !*nonRoot {
			report(d, "container %q: runAsNonRoot must be true", c.Name)
		}
		uid := sc.RunAsUser
		if uid == nil {
			uid = pod.RunAsUser
		}
		if uid != nil && *uid == 0 {
			report(d, "container %q: runAsUser must not be 0", c.Name)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			report(d, "container %q: readOnlyRootFilesystem must be true", c.Name)
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			report(d, "container %q: allowPrivilegeEscalation must be false", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			report(d, "container %q: must not be privileged", c.Name)
		}
		if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
			report(d, "container %q: capabilities must drop ALL and add none", c.Name)
		}
	}
}

func checkHook(d *Document, report reporter) {
	meta, _ := objectMeta(d)
	hooks := strings.Split(meta.Annotations["helm.sh/hook"], ",")
	for _, want := range []string{"pre-install", "pre-upgrade"} {
		if !slices.Contains(hooks, want) {
			report(d, "the migration Job must be a %s hook (helm.sh/hook)", want)
		}
	}
}

// dbSecret is the Secret key GATEWAY_DB_URL comes from; a literal value or a missing
// variable is reported (a database password would sit in the manifest, or the config
// would not load).
func dbSecret(d *Document, c *corev1.Container, report reporter) *corev1.SecretKeySelector {
	for _, e := range c.Env {
		if e.Name != dbURLEnv {
			continue
		}
		if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil {
			report(d, "container %q: %s must come from a secretKeyRef", c.Name, dbURLEnv)
			return nil
		}
		return e.ValueFrom.SecretKeyRef
	}
	report(d, "container %q: %s is not set", c.Name, dbURLEnv)
	return nil
}

func hasEnv(c *corev1.Container, name string) bool {
	for _, e := range c.Env {
		if e.Name == name {
			return true
		}
	}
	return false
}
