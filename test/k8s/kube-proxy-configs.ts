// KubeProxyConfiguration files as clusters carry them (the kube-system/kube-proxy ConfigMap, key config.conf), each
// accepted by kube-proxy v1.37.2 itself (kube-proxy-config.test.ts runs it on every one), and ones it refuses.

/** kubeadm's layout (its componentconfig defaults, as `kubeadm init` writes them) with IPVS mode chosen. */
export const KUBEADM_IPVS = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
bindAddress: 0.0.0.0
bindAddressHardFail: false
clientConnection:
  acceptContentTypes: ""
  burst: 0
  contentType: ""
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
  qps: 0
clusterCIDR: 10.244.0.0/16,fd00:244::/56
configSyncPeriod: 0s
conntrack:
  maxPerCore: null
  min: null
  tcpBeLiberal: false
  tcpCloseWaitTimeout: null
  tcpEstablishedTimeout: null
  udpStreamTimeout: 0s
  udpTimeout: 0s
detectLocal:
  bridgeInterface: ""
  interfaceNamePrefix: ""
detectLocalMode: ""
enableProfiling: false
healthzBindAddress: ""
hostnameOverride: ""
iptables:
  localhostNodePorts: null
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
ipvs:
  excludeCIDRs: null
  minSyncPeriod: 0s
  scheduler: ""
  strictARP: false
  syncPeriod: 0s
  tcpFinTimeout: 0s
  tcpTimeout: 0s
  udpTimeout: 0s
kind: KubeProxyConfiguration
logging:
  flushFrequency: 0
  options:
    json:
      infoBufferSize: "0"
    text:
      infoBufferSize: "0"
  verbosity: 0
metricsBindAddress: ""
mode: ipvs
nftables:
  masqueradeAll: false
  masqueradeBit: null
  minSyncPeriod: 0s
  syncPeriod: 0s
nodePortAddresses: null
oomScoreAdj: null
portRange: ""
showHiddenMetricsForVersion: ""
winkernel:
  enableDSR: false
  forwardHealthCheckVip: false
  networkName: ""
  rootHnsEndpointName: ""
  sourceVip: ""
`;

/** A hand-written one: NodePorts on the primary IPs and a second network, metrics on every address. */
export const IPVS_PRIMARY_AND_CIDR = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: "ipvs"
bindAddress: 10.0.5.1
metricsBindAddress: 0.0.0.0
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
ipvs:
  scheduler: rr
  strictARP: true
nodePortAddresses:
  - primary
  - 192.168.0.0/16
  - fd00:5::/64
`;

/** kubeadm's default: no mode (iptables on Linux). */
export const KUBEADM_DEFAULT_MODE = KUBEADM_IPVS.replace('mode: ipvs', 'mode: ""');

/** nftables without nodePortAddresses: kube-proxy defaults them to primary. */
export const NFTABLES = `apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
`;

/** Refused by kube-proxy v1.37.2's validation, and by the agent for the same entry. */
export const REFUSED: ReadonlyArray<{ name: string; text: string; mentions: RegExp }> = [
  { name: 'zoned address', text: `${NFTABLES}nodePortAddresses: ["fe80::1%eth0"]\n`, mentions: /fe80::1%eth0/ },
  { name: 'bare IP', text: `${NFTABLES}nodePortAddresses: ["10.0.0.1"]\n`, mentions: /10\.0\.0\.1/ },
  { name: 'keyword twice', text: `${NFTABLES}nodePortAddresses: [primary, primary]\n`, mentions: /primary/ },
  { name: 'unknown mode', text: IPVS_PRIMARY_AND_CIDR.replace('mode: "ipvs"', 'mode: userspace'), mentions: /userspace/ },
];
