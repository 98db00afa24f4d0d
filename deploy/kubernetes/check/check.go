package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/toolgate/toolgate/config"
	"gopkg.in/yaml.v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsyaml "sigs.k8s.io/yaml"
)

// kinds are the API types a manifest here may be; anything else is a
// problem, as is a field the type does not have.
var kinds = map[string]func() any{
	"v1 ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"v1 Service":                             func() any { return &corev1.Service{} },
	"apps/v1 Deployment":                     func() any { return &appsv1.Deployment{} },
	"policy/v1 PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2 HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
}

// kustomization is the part of kustomize's file these manifests use.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

// The container and paths the binary's checks name (docs/http.md, "Health
// and readiness").
const (
	container = "toolgate"
	readyz    = "/readyz"
	healthz   = "/healthz"
	policyMap = "configmap-policy.yaml"
)

// manifests is one kustomization directory, decoded.
type manifests struct {
	dir         string
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
}

// checkTree checks every kustomization directory under root and returns the
// HTTP paths of toolgate's probes, for the caller to ask the binary.
// policyFiles is toolgate's embedded default policy, which the policy
// ConfigMap must hold.
func checkTree(root string, policyFiles fs.FS) ([]string, error) {
	var probes []string
	var problems []error
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "kustomization.yaml" {
			return err
		}
		ms, err := load(filepath.Dir(p))
		if err != nil {
			problems = append(problems, err)
			return nil
		}
		paths, errs := ms.check(policyFiles)
		probes = append(probes, paths...)
		problems = append(problems, errs...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(probes) == 0 && len(problems) == 0 {
		problems = append(problems, fmt.Errorf("%s: no Deployment with a container %q", root, container))
	}
	return probes, errors.Join(problems...)
}

// load decodes the kustomization of dir and every resource it names,
// strictly: an unknown or repeated field is an error. The resources must be
// exactly the other YAML files of the directory, so none is forgotten.
func load(dir string) (*manifests, error) {
	b, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
	if err != nil {
		return nil, err
	}
	var k kustomization
	if err := strict(b, &k); err != nil {
		return nil, fmt.Errorf("%s/kustomization.yaml: %w", dir, err)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	var others []string
	for _, f := range files {
		if filepath.Base(f) != "kustomization.yaml" {
			others = append(others, filepath.Base(f))
		}
	}
	if listed := slices.Sorted(slices.Values(k.Resources)); !slices.Equal(listed, others) {
		return nil, fmt.Errorf("%s/kustomization.yaml: resources %v, but the directory holds %v", dir, listed, others)
	}
	ms := &manifests{dir: dir, configMaps: map[string]*corev1.ConfigMap{}}
	var problems []error
	for _, name := range k.Resources {
		obj, err := decode(filepath.Join(dir, name))
		if err != nil {
			problems = append(problems, err)
			continue
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			ms.deployments = append(ms.deployments, o)
		case *corev1.Service:
			ms.services = append(ms.services, o)
		case *corev1.ConfigMap:
			ms.configMaps[o.Name] = o
		case *policyv1.PodDisruptionBudget:
			ms.pdbs = append(ms.pdbs, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			ms.hpas = append(ms.hpas, o)
		}
	}
	return ms, errors.Join(problems...)
}

// decode reads one manifest: one YAML document of a known kind.
func decode(file string) (any, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if err := dec.Decode(&doc); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: one Kubernetes object per file (line %d)", file, doc.Line)
	}
	var meta metav1.TypeMeta
	if err := sigsyaml.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	newObj, ok := kinds[meta.APIVersion+" "+meta.Kind]
	if !ok {
		return nil, fmt.Errorf("%s: apiVersion %q kind %q is none of %v", file, meta.APIVersion, meta.Kind, slices.Sorted(maps.Keys(kinds)))
	}
	obj := newObj()
	if err := strict(b, obj); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return obj, nil
}

// strict decodes YAML as the API server's strict field validation does:
// through JSON, refusing unknown and repeated fields.
func strict(b []byte, v any) error { return sigsyaml.UnmarshalStrict(b, v) }

// check cross-checks the objects of one directory.
func (ms *manifests) check(policyFiles fs.FS) (probes []string, problems []error) {
	bad := func(format string, a ...any) {
		problems = append(problems, fmt.Errorf(ms.dir+": "+format, a...))
	}
	for _, d := range ms.deployments {
		if d.Spec.Selector == nil || !selects(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			bad("Deployment %s: its selector does not select its own pods", d.Name)
		}
		pod := d.Spec.Template.Spec
		if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
			bad("Deployment %s: securityContext.runAsNonRoot must be true", d.Name)
		}
		for _, c := range pod.Containers {
			sc := c.SecurityContext
			if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				bad("Deployment %s, container %s: securityContext needs readOnlyRootFilesystem: true, allowPrivilegeEscalation: false and capabilities.drop [ALL]", d.Name, c.Name)
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
				bad("Deployment %s, container %s: resources need cpu and memory requests and a memory limit", d.Name, c.Name)
			}
			if c.Name == container {
				paths, errs := ms.checkToolgate(d, c, policyFiles)
				probes = append(probes, paths...)
				problems = append(problems, errs...)
			}
		}
	}
	for _, s := range ms.services {
		d := ms.selected(s.Spec.Selector)
		if d == nil {
			bad("Service %s: its selector %v selects no Deployment here", s.Name, s.Spec.Selector)
			continue
		}
		for _, p := range s.Spec.Ports {
			if _, ok := containerPort(d, p.TargetPort); !ok {
				bad("Service %s: targetPort %s is no container port of Deployment %s", s.Name, p.TargetPort.String(), d.Name)
			}
		}
	}
	for _, p := range ms.pdbs {
		if p.Spec.Selector == nil || ms.selected(p.Spec.Selector.MatchLabels) == nil {
			bad("PodDisruptionBudget %s: its selector selects no Deployment here", p.Name)
		}
	}
	for _, h := range ms.hpas {
		ref := h.Spec.ScaleTargetRef
		if ref.Kind != "Deployment" || ref.APIVersion != "apps/v1" || !slices.ContainsFunc(ms.deployments, func(d *appsv1.Deployment) bool { return d.Name == ref.Name }) {
			bad("HorizontalPodAutoscaler %s: scaleTargetRef %s %s is no Deployment here", h.Name, ref.Kind, ref.Name)
		}
	}
	return probes, problems
}

// checkToolgate follows toolgate's container to its configuration: the file
// --config names, mounted from a ConfigMap, must be a configuration toolgate
// accepts; its listen port must be the container port the probes and
// Services use; its policy directory must be the mounted policy ConfigMap,
// which holds the embedded default policy.
func (ms *manifests) checkToolgate(d *appsv1.Deployment, c corev1.Container, policyFiles fs.FS) (probes []string, problems []error) {
	bad := func(format string, a ...any) {
		problems = append(problems, fmt.Errorf("%s: Deployment %s, container %s: "+format, append([]any{ms.dir, d.Name, c.Name}, a...)...))
	}
	if len(c.Args) != 3 || c.Args[0] != "serve" || c.Args[1] != "--config" {
		bad("args %q, want [serve --config FILE]", c.Args)
		return nil, problems
	}
	file := c.Args[2]
	cm, err := ms.mounted(d, c, path.Dir(file))
	if err != nil {
		bad("--config %s: %v", file, err)
		return nil, problems
	}
	text, ok := cm.Data[path.Base(file)]
	if !ok {
		bad("--config %s: ConfigMap %s has no key %q", file, cm.Name, path.Base(file))
		return nil, problems
	}
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		bad("ConfigMap %s, %s: toolgate refuses it:\n%v", cm.Name, path.Base(file), err)
		return nil, problems
	}
	_, portText, _ := net.SplitHostPort(cfg.Listen) // Parse validated it
	listenPort, err := strconv.Atoi(portText)
	if err != nil {
		bad("listen %q: a numeric port is needed for the container port", cfg.Listen)
		return nil, problems
	}
	problems = append(problems, ms.checkFleet(d, c, cfg)...)
	if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == int32(listenPort) }) {
		bad("no containerPort %d, the port of listen %q in ConfigMap %s", listenPort, cfg.Listen, cm.Name)
	}
	for _, pr := range []struct {
		name, path string
		probe      *corev1.Probe
	}{
		{"readinessProbe", readyz, c.ReadinessProbe},
		{"livenessProbe", healthz, c.LivenessProbe},
		{"startupProbe", healthz, c.StartupProbe},
	} {
		if pr.probe == nil {
			if pr.name != "startupProbe" {
				bad("no %s", pr.name)
			}
			continue
		}
		get := pr.probe.HTTPGet
		if get == nil || get.Path != pr.path {
			bad("%s must be an httpGet of %s", pr.name, pr.path)
			continue
		}
		if port, ok := containerPort(d, get.Port); !ok || port != int32(listenPort) {
			bad("%s port %s is not the listen port %d", pr.name, get.Port.String(), listenPort)
		}
		probes = append(probes, get.Path)
	}
	if cfg.Policy.Dir == "" {
		return probes, problems
	}
	pm, err := ms.mounted(d, c, cfg.Policy.Dir)
	if err != nil {
		bad("policy.dir %s: %v", cfg.Policy.Dir, err)
		return probes, problems
	}
	want, err := defaultPolicy(policyFiles)
	if err != nil {
		return probes, append(problems, err)
	}
	if !maps.Equal(pm.Data, want) || len(pm.BinaryData) > 0 {
		bad("ConfigMap %s is not the embedded default policy (rego/); regenerate %s with `make k8s-check K8S_CHECK_FLAGS=-update`", pm.Name, policyMap)
	}
	return probes, problems
}

// checkFleet checks what makes the pods one service (docs/deployment.md,
// "A fleet of replicas"): the variables the configuration names are in
// the container's environment, secrets from a Secret's key; the replica id
// is the pod's name; and a Deployment of more than one pod, or one an HPA
// scales, shares its sessions (sessions.key_env) and counts its rate limits
// once (a Redis limits.store).
func (ms *manifests) checkFleet(d *appsv1.Deployment, c corev1.Container, cfg *config.Config) (problems []error) {
	bad := func(format string, a ...any) {
		problems = append(problems, fmt.Errorf("%s: Deployment %s, container %s: "+format, append([]any{ms.dir, d.Name, c.Name}, a...)...))
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	for _, v := range []struct{ key, name string }{
		{"sessions.key_env", cfg.Sessions.KeyEnv},
		{"limits.store_password_env", cfg.Limits.StorePasswordEnv},
	} {
		if v.name == "" {
			continue
		}
		e, ok := env[v.name]
		switch {
		case !ok:
			bad("%s names %s, which is not in the container's env", v.key, v.name)
		case e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name == "" || e.ValueFrom.SecretKeyRef.Key == "":
			bad("env %s: a Secret's name and key (valueFrom.secretKeyRef), not a value in the manifest", v.name)
		}
	}
	if e, ok := env["TOOLGATE_REPLICA_ID"]; ok && (e.ValueFrom == nil || e.ValueFrom.FieldRef == nil || e.ValueFrom.FieldRef.FieldPath != "metadata.name") {
		bad("env TOOLGATE_REPLICA_ID must be the pod's name (valueFrom.fieldRef.fieldPath: metadata.name), or every pod logs the same replica")
	}
	scaled := slices.ContainsFunc(ms.hpas, func(h *autoscalingv2.HorizontalPodAutoscaler) bool { return h.Spec.ScaleTargetRef.Name == d.Name })
	if d.Spec.Replicas != nil && *d.Spec.Replicas > 1 || scaled {
		if cfg.Sessions.KeyEnv == "" {
			bad("more than one pod and no sessions.key_env: a session would serve on the pod that opened it only")
		}
		if cfg.Limits.Store == "memory" {
			bad("more than one pod and limits.store is memory: each pod would count the rate limits on its own")
		}
	}
	return problems
}

// mounted is the ConfigMap the container sees at dir.
func (ms *manifests) mounted(d *appsv1.Deployment, c corev1.Container, dir string) (*corev1.ConfigMap, error) {
	for _, m := range c.VolumeMounts {
		if path.Clean(m.MountPath) != path.Clean(dir) || m.SubPath != "" {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				if cm := ms.configMaps[v.ConfigMap.Name]; cm != nil {
					return cm, nil
				}
				return nil, fmt.Errorf("volume %s names ConfigMap %s, which is not here", v.Name, v.ConfigMap.Name)
			}
		}
		return nil, fmt.Errorf("volume %s is no ConfigMap", m.Name)
	}
	return nil, errors.New("no ConfigMap is mounted there (a subPath mount would miss its updates)")
}

// selected is the Deployment whose pods the selector selects.
func (ms *manifests) selected(selector map[string]string) *appsv1.Deployment {
	for _, d := range ms.deployments {
		if selects(selector, d.Spec.Template.Labels) {
			return d
		}
	}
	return nil
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// containerPort resolves a port by number or name among d's containers.
func containerPort(d *appsv1.Deployment, p intstr.IntOrString) (int32, bool) {
	for _, c := range d.Spec.Template.Spec.Containers {
		for _, cp := range c.Ports {
			if (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) || (p.Type == intstr.String && cp.Name == p.StrVal) {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

// defaultPolicy is every file of the embedded policy: its tests too, which
// the server skips and `toolgate policy test` in the pod can run.
func defaultPolicy(files fs.FS) (map[string]string, error) {
	out := map[string]string{}
	err := fs.WalkDir(files, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, p)
		out[p] = string(b)
		return err
	})
	return out, err
}
