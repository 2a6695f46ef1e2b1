// Tests of charts/ipvs-janitor with the real helm binary: lint, render, schema rejections.
//
// helm comes from <repo>/.tools/bin/helm (built by .ci/setup) or from PATH.
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runHelp } from "../../src/cli/options.js";
import {
  ALL_OPTIONS,
  APP_VERSION,
  chart,
  chartDir,
  container,
  EXPECTED_RULES,
  flags,
  FULLNAME,
  helm,
  NAMESPACE,
  one,
  ofKind,
  RELEASE,
  render,
  template,
  valuesFile,
  type Obj,
} from "./helm.js";

// Every flag of `ipvs-janitor run`, from its own help text.
const CLI_FLAGS = [...runHelp.matchAll(/^  --([a-z-]+)/gm)].map((m) => m[1]!);
// Set outside the args of the every-option render: NODE_IPS comes from the downward API, and the kube-proxy
// configuration excludes nodePortAddresses (its own describe block renders it).
const CLI_FLAGS_ELSEWHERE = new Set(["node-ips", "kube-proxy-config"]);

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
      "--drain-poll-interval=300ms",
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
        "drain-poll-interval": "1s",
        "log-level": "debug",
        "metrics-address": "0.0.0.0:9555",
        "nodeport-addresses": "192.0.2.0/24,2001:db8::/64,primary",
        "kube-proxy-metrics-address": "127.0.0.1:10249",
        "dry-run": true,
        "set-sysctls": true,
        kubeconfig: "/etc/ipvs-janitor/kubeconfig",
        "extra-flag": "x",
      },
    );
    for (const flag of CLI_FLAGS.filter((name) => !CLI_FLAGS_ELSEWHERE.has(name))) {
      assert.ok(f.has(flag), `--${flag} missing from ${JSON.stringify(c.args)}`);
    }
  });

  it("adds extra env, volumes and mounts, keeping NODE_NAME", () => {
    assert.deepEqual((c.env as Obj[]).map((e) => e.name), ["NODE_NAME", "NODE_IPS", "FOO"]);
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

  it("takes every policy --policy takes", () => {
    for (const policy of ["graceful", "drain", "immediate"]) {
      assert.equal(flags(container(render({ policy })).args).get("policy"), policy);
    }
  });

  it("accepts Go-style durations", () => {
    for (const d of ["1h30m", "500ms", "90s", "0s", "1.5h"]) {
      assert.equal(flags(container(render({ resyncPeriod: d })).args).get("resync-period"), d);
    }
  });
});

describe("helm template: kube-proxy's own configuration and node IPs", () => {
  it("takes NODE_IPS (the value of --node-ips, for nodeport-addresses primary) from status.hostIPs", () => {
    assert.ok(CLI_FLAGS.includes("node-ips"));
    const env = (container(render()).env as Obj[]).find((e) => e.name === "NODE_IPS");
    assert.deepEqual(env?.valueFrom, { fieldRef: { apiVersion: "v1", fieldPath: "status.hostIPs" } });
  });

  it("kubeProxy.configMap mounts that ConfigMap read-only and passes --kube-proxy-config to its key", () => {
    assert.ok(CLI_FLAGS.includes("kube-proxy-config"));
    const objects = render({ kubeProxy: { configMap: "kube-proxy" }, ...{ extraVolumes: ALL_OPTIONS.extraVolumes, extraVolumeMounts: ALL_OPTIONS.extraVolumeMounts } });
    const c = container(objects);
    const pod = one(objects, "DaemonSet").spec.template.spec;
    assert.equal(flags(c.args).get("kube-proxy-config"), "/etc/ipvs-janitor/kube-proxy/config.conf");
    assert.equal(flags(c.args).has("nodeport-addresses"), false);
    assert.deepEqual(pod.volumes, [
      { name: "kube-proxy-config", configMap: { name: "kube-proxy", items: [{ key: "config.conf", path: "config.conf" }] } },
      ...ALL_OPTIONS.extraVolumes,
    ]);
    assert.deepEqual(c.volumeMounts, [
      { name: "kube-proxy-config", mountPath: "/etc/ipvs-janitor/kube-proxy", readOnly: true },
      ...ALL_OPTIONS.extraVolumeMounts,
    ]);
    const other = container(render({ kubeProxy: { configMap: "proxy-settings", configKey: "kp.yaml" } }));
    assert.equal(flags(other.args).get("kube-proxy-config"), "/etc/ipvs-janitor/kube-proxy/kp.yaml");
  });

  it("refuses kubeProxy.configMap together with nodePortAddresses", () => {
    const r = template({ kubeProxy: { configMap: "kube-proxy" }, nodePortAddresses: ["10.0.0.0/8"] });
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /kubeProxy\.configMap and nodePortAddresses/);
  });

  it("accepts kube-proxy's nodePortAddresses syntax: CIDRs of both families and the keywords", () => {
    const values = ["10.0.0.0/8", "fd00::/64", "primary", "localhost", "all", "192.0.2.10"];
    assert.equal(flags(container(render({ nodePortAddresses: values })).args).get("nodeport-addresses"), values.join(","));
  });
});

describe("values.schema.json rejects bad values", () => {
  const cases: Array<{ name: string; values: Obj; mentions: RegExp[] }> = [
    { name: "unknown policy", values: { policy: "aggressive" }, mentions: [/policy/, /graceful/, /drain/] },
    { name: "negative maxDrainSeconds", values: { maxDrainSeconds: -1 }, mentions: [/maxDrainSeconds/, /-1/] },
    { name: "fractional maxDrainSeconds", values: { maxDrainSeconds: 1.5 }, mentions: [/maxDrainSeconds/] },
    { name: "negative resyncPeriod", values: { resyncPeriod: "-5s" }, mentions: [/resyncPeriod/, /-5s/] },
    { name: "non-duration resyncPeriod", values: { resyncPeriod: "abc" }, mentions: [/resyncPeriod/, /abc/] },
    { name: "unitless resyncPeriod", values: { resyncPeriod: "60" }, mentions: [/resyncPeriod/, /60/] },
    { name: "a unit the agent does not take", values: { resyncPeriod: "500us" }, mentions: [/resyncPeriod/] },
    { name: "non-duration drainPollInterval", values: { drainPollInterval: "fast" }, mentions: [/drainPollInterval/, /fast/] },
    { name: "unknown logLevel", values: { logLevel: "loud" }, mentions: [/logLevel/] },
    { name: "unknown securityContext.mode", values: { securityContext: { mode: "root" } }, mentions: [/mode/] },
    { name: "non-IP nodePortAddresses", values: { nodePortAddresses: ["eth0"] }, mentions: [/nodePortAddresses/] },
    { name: "zoned nodePortAddresses", values: { nodePortAddresses: ["fe80::1%eth0"] }, mentions: [/nodePortAddresses/] },
    { name: "out-of-range CIDR prefix", values: { nodePortAddresses: ["10.0.0.0/33"] }, mentions: [/nodePortAddresses/] },
    { name: "unknown kubeProxy key", values: { kubeProxy: { configmap: "kube-proxy" } }, mentions: [/configmap/] },
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
