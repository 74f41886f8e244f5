package main

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// validateAll holds every document to the part of the API server's validation that
// needs no cluster (names, labels, selectors, pod specs), then checks references
// between the documents: a Service or PodDisruptionBudget must select pods that some
// workload renders, and a Service's named target port must be declared by them.
func validateAll(docs []*Document) []string {
	var problems []string
	report := func(d *Document, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s: %s", d, fmt.Sprintf(format, args...)))
	}
	pods := map[*Document]*corev1.PodTemplateSpec{}
	for _, d := range docs {
		meta, ok := objectMeta(d)
		if !ok {
			report(d, "has no object metadata")
			continue
		}
		checkMeta(d, meta, report)
		switch o := d.Object.(type) {
		case *appsv1.Deployment:
			if o.Spec.Replicas != nil && *o.Spec.Replicas < 0 {
				report(d, "spec.replicas must not be negative")
			}
			checkSelector(d, o.Spec.Selector, o.Spec.Template.Labels, report)
			checkPodSpec(d, "spec.template.spec", &o.Spec.Template.Spec, false, report)
			pods[d] = &o.Spec.Template
		case *batchv1.Job:
			checkPodSpec(d, "spec.template.spec", &o.Spec.Template.Spec, true, report)
		case *corev1.Service:
			checkService(d, o, report)
		case *policyv1.PodDisruptionBudget:
			if (o.Spec.MinAvailable == nil) == (o.Spec.MaxUnavailable == nil) {
				report(d, "give exactly one of spec.minAvailable and spec.maxUnavailable")
			}
			if o.Spec.Selector == nil {
				report(d, "spec.selector is required")
			}
		}
	}
	// Cross references.
	for _, d := range docs {
		switch o := d.Object.(type) {
		case *corev1.Service:
			matched := selected(pods, labels.SelectorFromSet(o.Spec.Selector))
			if len(o.Spec.Selector) > 0 && len(matched) == 0 {
				report(d, "spec.selector %v matches no rendered workload's pods", o.Spec.Selector)
			}
			for _, port := range o.Spec.Ports {
				if port.TargetPort.Type != intstr.String {
					continue
				}
				for _, pod := range matched {
					if !declaresPort(pod, port.TargetPort.StrVal) {
						report(d, "port %q targets %q, which the selected pods do not declare",
							port.Name, port.TargetPort.StrVal)
						break
					}
				}
			}
		case *policyv1.PodDisruptionBudget:
			if o.Spec.Selector == nil {
				continue
			}
			selector, err := metav1.LabelSelectorAsSelector(o.Spec.Selector)
			if err != nil {
				report(d, "spec.selector: %v", err)
			} else if len(selected(pods, selector)) == 0 {
				report(d, "spec.selector matches no rendered workload's pods")
			}
		}
	}
	return problems
}

type reporter func(d *Document, format string, args ...any)

func objectMeta(d *Document) (*metav1.ObjectMeta, bool) {
	accessor, ok := d.Object.(metav1.ObjectMetaAccessor)
	if !ok {
		return nil, false
	}
	return accessor.GetObjectMeta().(*metav1.ObjectMeta), true
}

func checkMeta(d *Document, meta *metav1.ObjectMeta, report reporter) {
	if meta.Name == "" {
		report(d, "metadata.name is required")
	} else if d.Kind == "Service" {
		// Service names become DNS labels.
		for _, msg := range validation.IsDNS1035Label(meta.Name) {
			report(d, "metadata.name %q: %s", meta.Name, msg)
		}
	} else {
		for _, msg := range validation.IsDNS1123Subdomain(meta.Name) {
			report(d, "metadata.name %q: %s", meta.Name, msg)
		}
	}
	checkLabels(d, "metadata.labels", meta.Labels, report)
	for key := range meta.Annotations {
		for _, msg := range validation.IsQualifiedName(strings.ToLower(key)) {
			report(d, "metadata.annotations key %q: %s", key, msg)
		}
	}
}

func checkLabels(d *Document, where string, set map[string]string, report reporter) {
	for key, value := range set {
		for _, msg := range validation.IsQualifiedName(key) {
			report(d, "%s key %q: %s", where, key, msg)
		}
		for _, msg := range validation.IsValidLabelValue(value) {
			report(d, "%s[%s] value %q: %s", where, key, value, msg)
		}
	}
}

func checkSelector(d *Document, selector *metav1.LabelSelector, podLabels map[string]string, report reporter) {
	if selector == nil || (len(selector.MatchLabels) == 0 && len(selector.MatchExpressions) == 0) {
		report(d, "spec.selector is required and must not be empty")
		return
	}
	parsed, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		report(d, "spec.selector: %v", err)
		return
	}
	checkLabels(d, "spec.template.metadata.labels", podLabels, report)
	if !parsed.Matches(labels.Set(podLabels)) {
		report(d, "spec.selector does not match spec.template.metadata.labels (the API refuses this)")
	}
}

func checkService(d *Document, s *corev1.Service, report reporter) {
	if len(s.Spec.Ports) == 0 && s.Spec.Type != corev1.ServiceTypeExternalName {
		report(d, "spec.ports must not be empty")
	}
	names := map[string]bool{}
	for i, port := range s.Spec.Ports {
		where := fmt.Sprintf("spec.ports[%d]", i)
		if len(s.Spec.Ports) > 1 && port.Name == "" {
			report(d, "%s.name is required when there is more than one port", where)
		}
		if names[port.Name] {
			report(d, "%s.name %q is repeated", where, port.Name)
		}
		names[port.Name] = true
		checkPortNumber(d, where+".port", port.Port, report)
		checkIntOrNamedPort(d, where+".targetPort", port.TargetPort, true, report)
	}
}

func checkPodSpec(d *Document, where string, spec *corev1.PodSpec, job bool, report reporter) {
	if job && spec.RestartPolicy != corev1.RestartPolicyNever && spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		report(d, "%s.restartPolicy must be Never or OnFailure in a Job, not %q", where, spec.RestartPolicy)
	}
	if !job && spec.RestartPolicy != "" && spec.RestartPolicy != corev1.RestartPolicyAlways {
		report(d, "%s.restartPolicy must be Always in a Deployment", where)
	}
	if len(spec.Containers) == 0 {
		report(d, "%s.containers must not be empty", where)
	}
	volumes := map[string]bool{}
	for i, v := range spec.Volumes {
		vw := fmt.Sprintf("%s.volumes[%d]", where, i)
		for _, msg := range validation.IsDNS1123Label(v.Name) {
			report(d, "%s.name %q: %s", vw, v.Name, msg)
		}
		if volumes[v.Name] {
			report(d, "%s.name %q is repeated", vw, v.Name)
		}
		volumes[v.Name] = true
		if n := volumeSources(v.VolumeSource); n != 1 {
			report(d, "%s must have exactly one source, has %d", vw, n)
		}
	}
	names := map[string]bool{}
	all := append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...)
	for i, c := range all {
		cw := fmt.Sprintf("%s.containers[%s]", where, c.Name)
		if i < len(spec.InitContainers) {
			cw = fmt.Sprintf("%s.initContainers[%s]", where, c.Name)
		}
		for _, msg := range validation.IsDNS1123Label(c.Name) {
			report(d, "%s name %q: %s", cw, c.Name, msg)
		}
		if names[c.Name] {
			report(d, "%s: container name %q is repeated", cw, c.Name)
		}
		names[c.Name] = true
		checkContainer(d, cw, &c, volumes, report)
	}
}

func checkContainer(d *Document, where string, c *corev1.Container, volumes map[string]bool, report reporter) {
	if c.Image == "" {
		report(d, "%s.image is required", where)
	}
	portNames := map[string]bool{}
	for i, p := range c.Ports {
		pw := fmt.Sprintf("%s.ports[%d]", where, i)
		checkPortNumber(d, pw+".containerPort", p.ContainerPort, report)
		if p.Name != "" {
			for _, msg := range validation.IsValidPortName(p.Name) {
				report(d, "%s.name %q: %s", pw, p.Name, msg)
			}
			if portNames[p.Name] {
				report(d, "%s.name %q is repeated", pw, p.Name)
			}
			portNames[p.Name] = true
		}
	}
	for i, e := range c.Env {
		ew := fmt.Sprintf("%s.env[%d]", where, i)
		for _, msg := range validation.IsEnvVarName(e.Name) {
			report(d, "%s.name %q: %s", ew, e.Name, msg)
		}
		if e.ValueFrom != nil {
			if e.Value != "" {
				report(d, "%s: value and valueFrom exclude each other", ew)
			}
			sources := 0
			for _, set := range []bool{e.ValueFrom.SecretKeyRef != nil, e.ValueFrom.ConfigMapKeyRef != nil,
				e.ValueFrom.FieldRef != nil, e.ValueFrom.ResourceFieldRef != nil, e.ValueFrom.FileKeyRef != nil} {
				if set {
					sources++
				}
			}
			if sources != 1 {
				report(d, "%s.valueFrom must have exactly one source, has %d", ew, sources)
			}
			if ref := e.ValueFrom.SecretKeyRef; ref != nil && (ref.Name == "" || ref.Key == "") {
				report(d, "%s.valueFrom.secretKeyRef needs a name and a key", ew)
			}
		}
	}
	mounts := map[string]bool{}
	for i, m := range c.VolumeMounts {
		mw := fmt.Sprintf("%s.volumeMounts[%d]", where, i)
		if !volumes[m.Name] {
			report(d, "%s refers to volume %q, which the pod does not define", mw, m.Name)
		}
		if !strings.HasPrefix(m.MountPath, "/") {
			report(d, "%s.mountPath %q must be absolute", mw, m.MountPath)
		}
		if mounts[m.MountPath] {
			report(d, "%s.mountPath %q is repeated", mw, m.MountPath)
		}
		mounts[m.MountPath] = true
	}
	for name, probe := range map[string]*corev1.Probe{
		"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe,
	} {
		if probe == nil {
			continue
		}
		pw := where + "." + name
		handlers := 0
		for _, set := range []bool{probe.HTTPGet != nil, probe.TCPSocket != nil, probe.Exec != nil, probe.GRPC != nil} {
			if set {
				handlers++
			}
		}
		if handlers != 1 {
			report(d, "%s must have exactly one handler, has %d", pw, handlers)
		}
		if probe.HTTPGet != nil {
			checkIntOrNamedPort(d, pw+".httpGet.port", probe.HTTPGet.Port, false, report)
			if probe.HTTPGet.Port.Type == intstr.String && !portNames[probe.HTTPGet.Port.StrVal] {
				report(d, "%s.httpGet.port %q is not a port of this container", pw, probe.HTTPGet.Port.StrVal)
			}
		}
		if name == "livenessProbe" && probe.SuccessThreshold > 1 {
			report(d, "%s.successThreshold must be 1", pw)
		}
	}
	for resource, limit := range c.Resources.Limits {
		if request, ok := c.Resources.Requests[resource]; ok && request.Cmp(limit) > 0 {
			report(d, "%s.resources: the %s request %s exceeds its limit %s", where, resource, request.String(), limit.String())
		}
	}
}

func checkPortNumber(d *Document, where string, port int32, report reporter) {
	for _, msg := range validation.IsValidPortNum(int(port)) {
		report(d, "%s %d: %s", where, port, msg)
	}
}

func checkIntOrNamedPort(d *Document, where string, port intstr.IntOrString, zeroOK bool, report reporter) {
	if port.Type == intstr.String {
		for _, msg := range validation.IsValidPortName(port.StrVal) {
			report(d, "%s %q: %s", where, port.StrVal, msg)
		}
		return
	}
	if zeroOK && port.IntVal == 0 {
		return // a Service's targetPort defaults to its port
	}
	checkPortNumber(d, where, port.IntVal, report)
}

func volumeSources(v corev1.VolumeSource) int {
	n := 0
	for _, set := range []bool{
		v.HostPath != nil, v.EmptyDir != nil, v.Secret != nil, v.ConfigMap != nil,
		v.PersistentVolumeClaim != nil, v.Projected != nil, v.DownwardAPI != nil, v.CSI != nil,
		v.Ephemeral != nil, v.NFS != nil, v.Image != nil,
	} {
		if set {
			n++
		}
	}
	return n
}

func selected(pods map[*Document]*corev1.PodTemplateSpec, selector labels.Selector) []*corev1.PodTemplateSpec {
	var out []*corev1.PodTemplateSpec
	for _, pod := range pods {
		if !selector.Empty() && selector.Matches(labels.Set(pod.Labels)) {
			out = append(out, pod)
		}
	}
	return out
}

func declaresPort(pod *corev1.PodTemplateSpec, name string) bool {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}
