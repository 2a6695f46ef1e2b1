// Tests of charts/ipvs-janitor with the real helm binary: lint, render, schema rejections.
//
// helm comes from <repo>/.tools/bin/helm (built by .ci/setup) or from PATH.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments, stringify } from "yaml";

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

/** Repository root: this file compiles to <repo>/dist/test/chart/chart.test.js. */
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const chartDir = join(repoRoot, "charts", "ipvs-janitor");
const HELM_VERSION = "v3.22.0";

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

let cachedHelm: string | undefined;

/** <repo>/.tools/bin/helm, else `helm` on PATH; a clear error naming .ci/setup if neither exists. */
function helmPath(): string {
  if (cachedHelm) return cachedHelm;
  const local = join(repoRoot, ".tools", "bin", "helm");
  if (isExecutable(local)) return (cachedHelm = local);
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir && isExecutable(join(dir, "helm"))) return (cachedHelm = join(dir, "helm"));
  }
  throw new Error(
    `helm not found at ${local} nor on PATH: run .ci/setup, which builds the pinned helm ${HELM_VERSION} ` +
      `into .tools/bin (by hand: GOBIN=${join(repoRoot, ".tools", "bin")} go install helm.sh/helm/v3/cmd/helm@${HELM_VERSION}).`,
  );
}

// Keep helm away from the user's ~/.config, ~/.cache and plugins.
const helmHome = mkdtempSync(join(tmpdir(), "ipvs-janitor-helm-"));
after(() => rmSync(helmHome, { recursive: true, force: true }));
const helmEnv: NodeJS.ProcessEnv = {
  ...process.env,
  HELM_CACHE_HOME: join(helmHome, "cache"),
  HELM_CONFIG_HOME: join(helmHome, "config"),
  HELM_DATA_HOME: join(helmHome, "data"),
  HELM_PLUGINS: join(helmHome, "plugins"),
};

interface HelmResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

function helm(args: string[]): HelmResult {
  const r = spawnSync(helmPath(), args, { encoding: "utf8", env: helmEnv, timeout: 120_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let valuesCounter = 0;
function valuesFile(values: unknown): string {
  const path = join(helmHome, `values-${++valuesCounter}.yaml`);
  // helm reads values as YAML 1.1: quote y/yes/on/off and friends.
  writeFileSync(path, stringify(values, { version: "1.1" }));
  return path;
}

const RELEASE = "rel";
const NAMESPACE = "kube-system";
const FULLNAME = `${RELEASE}-ipvs-janitor`;

function template(values?: unknown): HelmResult {
  const args = ["template", RELEASE, chartDir, "--namespace", NAMESPACE];
  if (values !== undefined) args.push("-f", valuesFile(values));
  return helm(args);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = Record<string, any>;

/** `helm template` that must succeed; returns the rendered objects. */
function render(values?: unknown): Obj[] {
  const r = template(values);
  assert.equal(r.status, 0, `helm template failed (exit ${r.status}):\n${r.stderr}${r.stdout}`);
  const objects: Obj[] = [];
  for (const doc of parseAllDocuments(r.stdout)) {
    assert.deepEqual(doc.errors, [], "helm template produced invalid YAML");
    const obj: unknown = doc.toJS();
    if (obj !== null && obj !== undefined) objects.push(obj as Obj);
  }
  return objects;
}

function ofKind(objects: Obj[], kind: string): Obj[] {
  return objects.filter((o) => o.kind === kind);
}

function one(objects: Obj[], kind: string): Obj {
  const found = ofKind(objects, kind);
  assert.equal(found.length, 1, `expected exactly one ${kind}, got ${found.length}`);
  return found[0]!;
}

function container(objects: Obj[]): Obj {
  const ds = one(objects, "DaemonSet");
  const containers = ds.spec.template.spec.containers as Obj[];
  assert.equal(containers.length, 1);
  return containers[0]!;
}

/** Container args as flag -> value (true for a bare flag); also checks no flag is repeated. */
function flags(args: string[]): Map<string, string | true> {
  const m = new Map<string, string | true>();
  for (const a of args.slice(1)) {
    assert.match(a, /^--[a-z-]+/, `unexpected argument ${a}`);
    const eq = a.indexOf("=");
    const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
    assert.ok(!m.has(name), `flag --${name} given twice`);
    m.set(name, eq < 0 ? true : a.slice(eq + 1));
  }
  return m;
}

const chart = parse(readFileSync(join(chartDir, "Chart.yaml"), "utf8")) as Obj;
const APP_VERSION = String(chart.appVersion);

// Every flag of `ipvs-janitor run`.
const CLI_FLAGS = [
  "kubeconfig",
  "node-name",
  "policy",
  "max-drain-seconds",
  "dry-run",
  "resync-period",
  "nodeport-addresses",
  "metrics-address",
  "log-level",
  "set-sysctls",
];

const EXPECTED_RULES = [
  { apiGroups: [""], resources: ["services"], verbs: ["get", "list", "watch"] },
  { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["get", "list", "watch"] },
];

/** Values that set every option. */
const ALL_OPTIONS = {
  nameOverride: "",
  fullnameOverride: "",
  image: { repository: "registry.example/ipvs-janitor", tag: "9.9.9", pullPolicy: "Always" },
  imagePullSecrets: [{ name: "regcred" }],
  policy: "immediate",
  maxDrainSeconds: 300,
  dryRun: true,
  resyncPeriod: "5m",
  nodePortAddresses: ["192.0.2.10", "2001:db8::10"],
  logLevel: "debug",
  setSysctls: true,
  kubeconfig: "/etc/ipvs-janitor/kubeconfig",
  extraArgs: ["--extra-flag=x"],
  extraEnv: [{ name: "FOO", value: "bar" }],
  extraVolumes: [{ name: "kubeconfig", secret: { secretName: "janitor-kubeconfig" } }],
  extraVolumeMounts: [{ name: "kubeconfig", mountPath: "/etc/ipvs-janitor", readOnly: true }],
  metrics: {
    host: "0.0.0.0",
    port: 9555,
    service: { enabled: true, clusterIP: "None", port: 8080, annotations: { "svc-note": "x" }, labels: { svc: "y" } },
    serviceMonitor: {
      enabled: true,
      namespace: "monitoring",
      interval: "15s",
      scrapeTimeout: "10s",
      labels: { release: "prom" },
      annotations: { "sm-note": "z" },
      relabelings: [{ targetLabel: "cluster", replacement: "c1" }],
      metricRelabelings: [{ action: "drop", regex: "go_.*", sourceLabels: ["__name__"] }],
    },
  },
  livenessProbe: { initialDelaySeconds: 1, periodSeconds: 2, timeoutSeconds: 3, failureThreshold: 4 },
  readinessProbe: { initialDelaySeconds: 5, periodSeconds: 6, timeoutSeconds: 7, failureThreshold: 8 },
  securityContext: { mode: "privileged" },
  serviceAccount: { create: true, name: "janitor", annotations: { "sa-note": "w" }, automountServiceAccountToken: true },
  rbac: { create: true },
  tolerations: [{ key: "dedicated", operator: "Equal", value: "edge", effect: "NoSchedule" }],
  priorityClassName: "custom-priority",
  nodeSelector: { "kubernetes.io/os": "linux", "node-role/edge": "true" },
  affinity: {
    nodeAffinity: {
      requiredDuringSchedulingIgnoredDuringExecution: {
        nodeSelectorTerms: [{ matchExpressions: [{ key: "kube-proxy-mode", operator: "In", values: ["ipvs"] }] }],
      },
    },
  },
  updateStrategy: { type: "RollingUpdate", rollingUpdate: { maxUnavailable: "10%" } },
  terminationGracePeriodSeconds: 45,
  resources: { requests: { cpu: "50m", memory: "128Mi" }, limits: { cpu: "1", memory: "512Mi" } },
  commonLabels: { team: "netops" },
  commonAnnotations: { owner: "netops@example.com" },
  podLabels: { "pod-label": "p" },
  podAnnotations: { "pod-note": "q" },
};

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

describe("helm binary", () => {
  it("is found (.tools/bin/helm or PATH) and runs", () => {
    const r = helm(["version", "--short"]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^v3\./);
  });
});

describe("helm lint", () => {
  for (const strict of [false, true]) {
    it(`passes${strict ? " with --strict" : ""} on the defaults`, () => {
      const r = helm(["lint", chartDir, ...(strict ? ["--strict"] : [])]);
      assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      assert.doesNotMatch(r.stdout, /\[(WARNING|ERROR)\]/, r.stdout);
    });
  }

  it("passes with --strict with every option set", () => {
    const r = helm(["lint", chartDir, "--strict", "-f", valuesFile(ALL_OPTIONS)]);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.doesNotMatch(r.stdout, /\[(WARNING|ERROR)\]/, r.stdout);
  });

  it("passes with --strict in netAdmin mode", () => {
    const r = helm(["lint", chartDir, "--strict", "--set", "securityContext.mode=netAdmin"]);
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  });
});

describe("helm template with default values", () => {
  const objects = render();
  const ds = one(objects, "DaemonSet");
  const pod = ds.spec.template.spec;
  const c = container(objects);

  it("renders exactly a ServiceAccount, ClusterRole, ClusterRoleBinding and DaemonSet", () => {
    assert.deepEqual(objects.map((o) => o.kind).sort(), ["ClusterRole", "ClusterRoleBinding", "DaemonSet", "ServiceAccount"]);
    for (const o of objects) {
      if (o.kind !== "ClusterRole" && o.kind !== "ClusterRoleBinding") assert.equal(o.metadata.namespace, NAMESPACE, o.kind);
    }
  });

  it("passes the default flags and nothing optional", () => {
    assert.deepEqual(c.args, [
      "run",
      "--node-name=$(NODE_NAME)",
      "--policy=graceful",
      "--max-drain-seconds=0",
      "--resync-period=60s",
      "--log-level=info",
      "--metrics-address=0.0.0.0:9940",
    ]);
    assert.equal(c.command, undefined, "the image ENTRYPOINT must be kept");
  });

  it("takes NODE_NAME from the downward API", () => {
    const env = (c.env as Obj[]).find((e) => e.name === "NODE_NAME");
    assert.deepEqual(env?.valueFrom, { fieldRef: { apiVersion: "v1", fieldPath: "spec.nodeName" } });
  });

  it("runs on every node like kube-proxy", () => {
    assert.deepEqual(pod.tolerations, [{ operator: "Exists" }]);
    assert.equal(pod.priorityClassName, "system-node-critical");
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.dnsPolicy, "ClusterFirstWithHostNet");
    assert.deepEqual(pod.nodeSelector, { "kubernetes.io/os": "linux" });
    assert.equal(pod.affinity, undefined);
    assert.deepEqual(ds.spec.updateStrategy, { type: "RollingUpdate", rollingUpdate: { maxUnavailable: 1 } });
    assert.equal(pod.terminationGracePeriodSeconds, 30);
  });

  it("uses the image at the chart's appVersion", () => {
    assert.equal(c.image, `ipvs-janitor:${APP_VERSION}`);
    assert.equal(c.imagePullPolicy, "IfNotPresent");
    assert.equal(pod.imagePullSecrets, undefined);
  });

  it("exposes the metrics port and probes /healthz and /readyz on it", () => {
    assert.deepEqual(c.ports, [{ name: "metrics", containerPort: 9940, protocol: "TCP" }]);
    assert.deepEqual(c.livenessProbe.httpGet, { path: "/healthz", port: "metrics" });
    assert.deepEqual(c.readinessProbe.httpGet, { path: "/readyz", port: "metrics" });
    assert.equal(c.livenessProbe.periodSeconds, 10);
  });

  it("is privileged by default", () => {
    assert.equal(c.securityContext.privileged, true);
    assert.equal(c.securityContext.runAsUser, 0);
    assert.equal(c.securityContext.capabilities, undefined);
  });

  it("sets resources", () => {
    assert.deepEqual(c.resources, { requests: { cpu: "20m", memory: "96Mi" }, limits: { memory: "256Mi" } });
  });

  it("grants only get/list/watch on services and endpointslices", () => {
    const role = one(objects, "ClusterRole");
    assert.equal(role.metadata.name, FULLNAME);
    assert.deepEqual(role.rules, EXPECTED_RULES);
    assert.equal(role.aggregationRule, undefined);
    assert.equal(ofKind(objects, "Role").length, 0);
    assert.equal(ofKind(objects, "RoleBinding").length, 0);
  });

  it("binds the ClusterRole to the ServiceAccount the pods use", () => {
    const sa = one(objects, "ServiceAccount");
    const binding = one(objects, "ClusterRoleBinding");
    assert.equal(sa.metadata.name, FULLNAME);
    assert.equal(pod.serviceAccountName, FULLNAME);
    assert.deepEqual(binding.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: FULLNAME });
    assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: FULLNAME, namespace: NAMESPACE }]);
  });

  it("labels every object and the pods with the standard labels", () => {
    const expected = {
      "helm.sh/chart": `ipvs-janitor-${chart.version}`,
      "app.kubernetes.io/name": "ipvs-janitor",
      "app.kubernetes.io/instance": RELEASE,
      "app.kubernetes.io/version": APP_VERSION,
      "app.kubernetes.io/managed-by": "Helm",
      "app.kubernetes.io/component": "agent",
    };
    for (const o of [...objects, { kind: "pod template", metadata: ds.spec.template.metadata }]) {
      for (const [k, v] of Object.entries(expected)) assert.equal(o.metadata.labels?.[k], v, `${o.kind} label ${k}`);
    }
    const selector = ds.spec.selector.matchLabels as Obj;
    assert.deepEqual(selector, {
      "app.kubernetes.io/name": "ipvs-janitor",
      "app.kubernetes.io/instance": RELEASE,
      "app.kubernetes.io/component": "agent",
    });
    for (const [k, v] of Object.entries(selector)) assert.equal(ds.spec.template.metadata.labels[k], v);
  });

  it("renders no metrics Service and no ServiceMonitor", () => {
    assert.equal(ofKind(objects, "Service").length, 0);
    assert.equal(ofKind(objects, "ServiceMonitor").length, 0);
  });
});

describe("helm template with every option set", () => {
  const objects = render(ALL_OPTIONS);
  const ds = one(objects, "DaemonSet");
  const pod = ds.spec.template.spec;
  const c = container(objects);
  const f = flags(c.args as string[]);

  it("passes every CLI flag from the values", () => {
    assert.equal(c.args[0], "run");
    assert.deepEqual(
      Object.fromEntries(f),
      {
        "node-name": "$(NODE_NAME)",
        policy: "immediate",
        "max-drain-seconds": "300",
        "resync-period": "5m",
        "log-level": "debug",
        "metrics-address": "0.0.0.0:9555",
        "nodeport-addresses": "192.0.2.10,2001:db8::10",
        "dry-run": true,
        "set-sysctls": true,
        kubeconfig: "/etc/ipvs-janitor/kubeconfig",
        "extra-flag": "x",
      },
    );
    for (const flag of CLI_FLAGS) assert.ok(f.has(flag), `--${flag} missing from ${JSON.stringify(c.args)}`);
  });

  it("adds extra env, volumes and mounts, keeping NODE_NAME", () => {
    assert.deepEqual((c.env as Obj[]).map((e) => e.name), ["NODE_NAME", "FOO"]);
    assert.deepEqual(c.volumeMounts, ALL_OPTIONS.extraVolumeMounts);
    assert.deepEqual(pod.volumes, ALL_OPTIONS.extraVolumes);
  });

  it("uses the image, pull policy and pull secrets", () => {
    assert.equal(c.image, "registry.example/ipvs-janitor:9.9.9");
    assert.equal(c.imagePullPolicy, "Always");
    assert.deepEqual(pod.imagePullSecrets, [{ name: "regcred" }]);
  });

  it("moves the metrics port and keeps the probes on it", () => {
    assert.deepEqual(c.ports, [{ name: "metrics", containerPort: 9555, protocol: "TCP" }]);
    assert.deepEqual(c.livenessProbe, { httpGet: { path: "/healthz", port: "metrics" }, ...ALL_OPTIONS.livenessProbe });
    assert.deepEqual(c.readinessProbe, { httpGet: { path: "/readyz", port: "metrics" }, ...ALL_OPTIONS.readinessProbe });
  });

  it("applies scheduling values", () => {
    assert.deepEqual(pod.tolerations, ALL_OPTIONS.tolerations);
    assert.equal(pod.priorityClassName, "custom-priority");
    assert.deepEqual(pod.nodeSelector, ALL_OPTIONS.nodeSelector);
    assert.deepEqual(pod.affinity, ALL_OPTIONS.affinity);
    assert.deepEqual(ds.spec.updateStrategy, ALL_OPTIONS.updateStrategy);
    assert.equal(pod.terminationGracePeriodSeconds, 45);
    assert.deepEqual(c.resources, ALL_OPTIONS.resources);
    assert.equal(pod.hostNetwork, true);
    assert.equal(pod.dnsPolicy, "ClusterFirstWithHostNet");
  });

  it("names the ServiceAccount and annotates it", () => {
    const sa = one(objects, "ServiceAccount");
    assert.equal(sa.metadata.name, "janitor");
    assert.equal(sa.metadata.annotations["sa-note"], "w");
    assert.equal(pod.serviceAccountName, "janitor");
    assert.equal(one(objects, "ClusterRoleBinding").subjects[0].name, "janitor");
  });

  it("keeps RBAC to exactly the two read-only rules", () => {
    assert.deepEqual(one(objects, "ClusterRole").rules, EXPECTED_RULES);
  });

  it("puts commonLabels/commonAnnotations on every object and pod labels/annotations on pods", () => {
    assert.equal(objects.length, 6);
    for (const o of objects) {
      assert.equal(o.metadata.labels.team, "netops", `${o.kind} commonLabels`);
      assert.equal(o.metadata.annotations?.owner, "netops@example.com", `${o.kind} commonAnnotations`);
    }
    const podMeta = ds.spec.template.metadata;
    assert.equal(podMeta.labels.team, "netops");
    assert.equal(podMeta.labels["pod-label"], "p");
    assert.deepEqual(podMeta.annotations, { "pod-note": "q" });
    for (const [k, v] of Object.entries(ds.spec.selector.matchLabels as Obj)) assert.equal(podMeta.labels[k], v);
  });

  it("renders a metrics Service that selects the agent pods", () => {
    const svc = one(objects, "Service");
    assert.equal(svc.metadata.name, `${FULLNAME}-metrics`);
    assert.equal(svc.spec.clusterIP, "None");
    assert.deepEqual(svc.spec.ports, [{ name: "metrics", port: 8080, targetPort: "metrics", protocol: "TCP" }]);
    assert.equal(svc.metadata.labels.svc, "y");
    assert.equal(svc.metadata.annotations["svc-note"], "x");
    for (const [k, v] of Object.entries(svc.spec.selector as Obj)) assert.equal(ds.spec.template.metadata.labels[k], v);
  });

  it("renders a ServiceMonitor that selects the metrics Service", () => {
    const sm = one(objects, "ServiceMonitor");
    const svc = one(objects, "Service");
    assert.equal(sm.apiVersion, "monitoring.coreos.com/v1");
    assert.equal(sm.metadata.namespace, "monitoring");
    assert.equal(sm.metadata.labels.release, "prom");
    assert.equal(sm.metadata.annotations["sm-note"], "z");
    assert.deepEqual(sm.spec.namespaceSelector, { matchNames: [NAMESPACE] });
    for (const [k, v] of Object.entries(sm.spec.selector.matchLabels as Obj)) assert.equal(svc.metadata.labels[k], v, k);
    assert.equal(sm.spec.endpoints.length, 1);
    const ep = sm.spec.endpoints[0];
    assert.equal(ep.port, "metrics");
    assert.equal(ep.path, "/metrics");
    assert.equal(ep.interval, "15s");
    assert.equal(ep.scrapeTimeout, "10s");
    assert.deepEqual(ep.relabelings.at(-1), { targetLabel: "cluster", replacement: "c1" });
    assert.deepEqual(ep.metricRelabelings, ALL_OPTIONS.metrics.serviceMonitor.metricRelabelings);
  });
});

describe("helm template toggles", () => {
  it("netAdmin mode: only NET_ADMIN, all else dropped, read-only root fs, not privileged, root", () => {
    const sc = container(render({ securityContext: { mode: "netAdmin" } })).securityContext;
    assert.deepEqual(sc.capabilities, { add: ["NET_ADMIN"], drop: ["ALL"] });
    assert.equal(sc.readOnlyRootFilesystem, true);
    assert.equal(sc.allowPrivilegeEscalation, false);
    assert.notEqual(sc.privileged, true);
    assert.equal(sc.runAsUser, 0);
  });

  it("rejects setSysctls=true in netAdmin mode, naming both values", () => {
    const r = template({ securityContext: { mode: "netAdmin" }, setSysctls: true });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /setSysctls/);
    assert.match(r.stderr, /privileged/);
  });

  it("accepts setSysctls=true in privileged mode", () => {
    assert.ok(flags(container(render({ setSysctls: true })).args).get("set-sysctls"));
  });

  it("ServiceMonitor appears only when enabled", () => {
    const svcOnly = render({ metrics: { service: { enabled: true } } });
    assert.equal(ofKind(svcOnly, "Service").length, 1);
    assert.equal(ofKind(svcOnly, "ServiceMonitor").length, 0);
    const sm = render({ metrics: { serviceMonitor: { enabled: true } } });
    assert.equal(ofKind(sm, "ServiceMonitor").length, 1);
    assert.equal(ofKind(sm, "Service").length, 1, "a ServiceMonitor brings its Service");
    assert.equal(one(sm, "ServiceMonitor").metadata.namespace, NAMESPACE);
  });

  it("uses the image digest when set", () => {
    const digest = `sha256:${"a".repeat(64)}`;
    assert.equal(container(render({ image: { repository: "r/ipvs-janitor", digest } })).image, `r/ipvs-janitor@${digest}`);
  });

  it("renders no RBAC and needs a name when the ServiceAccount is not created", () => {
    const objects = render({ rbac: { create: false }, serviceAccount: { create: false, name: "existing" } });
    assert.deepEqual(objects.map((o) => o.kind), ["DaemonSet"]);
    assert.equal(one(objects, "DaemonSet").spec.template.spec.serviceAccountName, "existing");
    const r = template({ serviceAccount: { create: false } });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /serviceAccount\.name/);
  });

  it("accepts Go-style durations", () => {
    for (const d of ["1h30m", "500ms", "90s", "0s", "1.5h"]) {
      assert.equal(flags(container(render({ resyncPeriod: d })).args).get("resync-period"), d);
    }
  });
});

describe("values.schema.json rejects bad values", () => {
  const cases: Array<{ name: string; values: Obj; mentions: RegExp[] }> = [
    { name: "unknown policy", values: { policy: "aggressive" }, mentions: [/policy/, /graceful/] },
    { name: "negative maxDrainSeconds", values: { maxDrainSeconds: -1 }, mentions: [/maxDrainSeconds/, /-1/] },
    { name: "fractional maxDrainSeconds", values: { maxDrainSeconds: 1.5 }, mentions: [/maxDrainSeconds/] },
    { name: "negative resyncPeriod", values: { resyncPeriod: "-5s" }, mentions: [/resyncPeriod/, /-5s/] },
    { name: "non-duration resyncPeriod", values: { resyncPeriod: "abc" }, mentions: [/resyncPeriod/, /abc/] },
    { name: "unitless resyncPeriod", values: { resyncPeriod: "60" }, mentions: [/resyncPeriod/, /60/] },
    { name: "unknown logLevel", values: { logLevel: "loud" }, mentions: [/logLevel/] },
    { name: "unknown securityContext.mode", values: { securityContext: { mode: "root" } }, mentions: [/mode/] },
    { name: "non-IP nodePortAddresses", values: { nodePortAddresses: ["eth0"] }, mentions: [/nodePortAddresses/] },
    { name: "metrics port out of range", values: { metrics: { port: 70000 } }, mentions: [/port/, /70,?000/] },
    { name: "unknown top-level key", values: { bogusKey: 1 }, mentions: [/bogusKey/] },
    { name: "misspelt top-level key", values: { maxDrainSecond: 5 }, mentions: [/maxDrainSecond/] },
  ];
  for (const { name, values, mentions } of cases) {
    it(name, () => {
      const r = template(values);
      assert.notEqual(r.status, 0, `helm accepted ${JSON.stringify(values)}:\n${r.stdout.slice(0, 400)}`);
      assert.match(r.stderr, /schema/i, r.stderr);
      for (const re of mentions) assert.match(r.stderr, re, `error should mention ${re}:\n${r.stderr}`);
    });
  }

  it("helm lint --strict fails too", () => {
    const r = helm(["lint", chartDir, "--strict", "--set", "policy=aggressive"]);
    assert.notEqual(r.status, 0);
    assert.match(r.stdout + r.stderr, /policy/);
  });
});
