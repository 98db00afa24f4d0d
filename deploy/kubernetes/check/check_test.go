package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/toolgate/toolgate/rego"
)

// TestManifests: the manifests as shipped pass, and each mistake below, made
// in a copy of them, is named.
func TestManifests(t *testing.T) {
	probes, err := checkTree("..", rego.FS)
	if err != nil {
		t.Fatalf("the shipped manifests: %v", err)
	}
	if want := []string{readyz, healthz, healthz}; !slices.Equal(probes, want) {
		t.Errorf("probes = %v, want %v", probes, want)
	}

	for _, tc := range []struct {
		name, file, old, new, want string
	}{
		{"unknown field", "deployment.yaml", "readinessProbe:", "readinesProbe:", `unknown field "readinesProbe"`},
		{"wrong type", "deployment.yaml", "containerPort: 8080", `containerPort: "8080"`, "deployment.yaml"},
		{"unknown kind", "poddisruptionbudget.yaml", "policy/v1", "policy/v1beta1", "is none of"},
		{"two objects in a file", "service.yaml", "apiVersion: v1", "apiVersion: v1\nkind: Service\n---\napiVersion: v1", "one Kubernetes object per file"},
		{"resource not listed", "kustomization.yaml", "  - service.yaml\n", "", "resources"},
		{"unknown configuration key", "configmap-config.yaml", `listen: ":8080"`, "listen: \":8080\"\n    listn: x", "listn"},
		{"invalid configuration value", "configmap-config.yaml", "provider: auth0", "provider: okta", "provider"},
		{"listen port not the container port", "configmap-config.yaml", `listen: ":8080"`, `listen: ":9090"`, "no containerPort 9090"},
		{"readiness path", "deployment.yaml", "path: /readyz", "path: /ready", "readinessProbe must be an httpGet of /readyz"},
		{"liveness port", "deployment.yaml", "path: /healthz\n              port: http\n            periodSeconds: 10", "path: /healthz\n              port: 9090\n            periodSeconds: 10", "livenessProbe port 9090 is not the listen port 8080"},
		{"config not mounted", "deployment.yaml", "/etc/toolgate/config/toolgate.yaml", "/etc/toolgate/toolgate.yaml", "no ConfigMap is mounted there"},
		{"config key missing", "deployment.yaml", "/etc/toolgate/config/toolgate.yaml", "/etc/toolgate/config/config.yaml", `has no key "config.yaml"`},
		{"policy drift", "configmap-policy.yaml", `"add": {},`, `"add": {"any_of": {}},`, "is not the embedded default policy"},
		{"policy not mounted", "configmap-config.yaml", "dir: /etc/toolgate/policy", "dir: /srv/policy", "policy.dir /srv/policy"},
		{"service target port", "service.yaml", "targetPort: http", "targetPort: web", "targetPort web"},
		{"service selector", "service.yaml", "  selector:\n    app.kubernetes.io/name: toolgate", "  selector:\n    app.kubernetes.io/name: tollgate", "selects no Deployment"},
		{"root filesystem", "deployment.yaml", "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false", "readOnlyRootFilesystem"},
		{"capabilities", "deployment.yaml", `drop: ["ALL"]`, `drop: ["NET_RAW"]`, "capabilities.drop"},
		{"run as root", "deployment.yaml", "runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot"},
		{"no memory limit", "deployment.yaml", "limits:\n              memory: 512Mi", "limits: {}", "memory limit"},
		{"hpa target", "horizontalpodautoscaler.yaml", "name: toolgate\n  minReplicas", "name: toolgates\n  minReplicas", "scaleTargetRef Deployment toolgates"},
		{"session key not in the environment", "deployment.yaml", "- name: TOOLGATE_SESSION_KEY", "- name: TOOLGATE_SESSION", "sessions.key_env names TOOLGATE_SESSION_KEY"},
		{"store password not in the environment", "deployment.yaml", "- name: TOOLGATE_REDIS_PASSWORD", "- name: REDIS_PASSWORD", "limits.store_password_env names TOOLGATE_REDIS_PASSWORD"},
		{"secret without a key", "deployment.yaml", "key: session-key", `key: ""`, "env TOOLGATE_SESSION_KEY: a Secret's name and key"},
		{"replica id not the pod's name", "deployment.yaml", "fieldPath: metadata.name", "fieldPath: metadata.namespace", "TOOLGATE_REPLICA_ID must be the pod's name"},
		{"a fleet counting on its own", "configmap-config.yaml", "store: redis://toolgate-redis:6379/0\n      store_password_env: TOOLGATE_REDIS_PASSWORD", "store: memory", "limits.store is memory"},
		{"a fleet without a session key", "configmap-config.yaml", "sessions:\n      key_env: TOOLGATE_SESSION_KEY\n", "", "no sessions.key_env"},
		{"pdb selector", "poddisruptionbudget.yaml", "      app.kubernetes.io/name: toolgate", "      app.kubernetes.io/name: redis", "PodDisruptionBudget toolgate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyManifests(t)
			file := filepath.Join(dir, tc.file)
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(b), tc.old) {
				t.Fatalf("%s does not contain %q", tc.file, tc.old)
			}
			if err := os.WriteFile(file, []byte(strings.Replace(string(b), tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err = checkTree(dir, rego.FS)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("checkTree = %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// TestUpdateWritesWhatTheCheckWants: -update's ConfigMap is the one the
// check accepts, and the shipped one is up to date.
func TestUpdateWritesWhatTheCheckWants(t *testing.T) {
	want, err := policyConfigMap(rego.FS)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join("..", policyMap))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s is not what -update writes; run `make k8s-check K8S_CHECK_FLAGS=-update`", policyMap)
	}
}

// copyManifests copies the YAML files of the base directory (not redis/).
func copyManifests(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob(filepath.Join("..", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}
