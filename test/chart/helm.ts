// Shared by the chart tests: the real helm binary (<repo>/.tools/bin/helm, built by .ci/setup, or PATH), rendering,
// and the values that set every option.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, resolve } from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import { parse, parseAllDocuments, stringify } from "yaml";

// ---------------------------------------------------------------------------------------------

/** Repository root: this file compiles to <repo>/dist/test/chart/helm.js. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const chartDir = join(repoRoot, "charts", "ipvs-janitor");
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
export function helmPath(): string {
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
export const helmEnv: NodeJS.ProcessEnv = {
  ...process.env,
  HELM_CACHE_HOME: join(helmHome, "cache"),
  HELM_CONFIG_HOME: join(helmHome, "config"),
  HELM_DATA_HOME: join(helmHome, "data"),
  HELM_PLUGINS: join(helmHome, "plugins"),
};

export interface HelmResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function helm(args: string[]): HelmResult {
  const r = spawnSync(helmPath(), args, { encoding: "utf8", env: helmEnv, timeout: 120_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

let valuesCounter = 0;
export function valuesFile(values: unknown): string {
  const path = join(helmHome, `values-${++valuesCounter}.yaml`);
  // helm reads values as YAML 1.1: quote y/yes/on/off and friends.
  writeFileSync(path, stringify(values, { version: "1.1" }));
  return path;
}

export const RELEASE = "rel";
export const NAMESPACE = "kube-system";
export const FULLNAME = `${RELEASE}-ipvs-janitor`;

export function template(values?: unknown): HelmResult {
  const args = ["template", RELEASE, chartDir, "--namespace", NAMESPACE];
  if (values !== undefined) args.push("-f", valuesFile(values));
  return helm(args);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Obj = Record<string, any>;

/** `helm template` that must succeed; returns the rendered objects. */
export function render(values?: unknown): Obj[] {
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

export function ofKind(objects: Obj[], kind: string): Obj[] {
  return objects.filter((o) => o.kind === kind);
}

export function one(objects: Obj[], kind: string): Obj {
  const found = ofKind(objects, kind);
  assert.equal(found.length, 1, `expected exactly one ${kind}, got ${found.length}`);
  return found[0]!;
}

export function container(objects: Obj[]): Obj {
  const ds = one(objects, "DaemonSet");
  const containers = ds.spec.template.spec.containers as Obj[];
  assert.equal(containers.length, 1);
  return containers[0]!;
}

/** Container args as flag -> value (true for a bare flag); also checks no flag is repeated. */
export function flags(args: string[]): Map<string, string | true> {
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

export const chart = parse(readFileSync(join(chartDir, "Chart.yaml"), "utf8")) as Obj;
export const APP_VERSION = String(chart.appVersion);

export const EXPECTED_RULES = [
  { apiGroups: [""], resources: ["services"], verbs: ["get", "list", "watch"] },
  { apiGroups: ["discovery.k8s.io"], resources: ["endpointslices"], verbs: ["get", "list", "watch"] },
];

/** Values that set every option. */
export const ALL_OPTIONS = {
  nameOverride: "",
  fullnameOverride: "",
  image: { repository: "registry.example/ipvs-janitor", tag: "9.9.9", pullPolicy: "Always" },
  imagePullSecrets: [{ name: "regcred" }],
  policy: "immediate",
  maxDrainSeconds: 300,
  dryRun: true,
  resyncPeriod: "5m",
  drainPollInterval: "1s",
  nodePortAddresses: ["192.0.2.0/24", "2001:db8::/64", "primary"],
  kubeProxy: { configMap: "", configKey: "config.conf", metricsAddress: "127.0.0.1:10249" },
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

