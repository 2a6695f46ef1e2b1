// From API-shaped Services and EndpointSlices, through the slim records, to the virtual services kube-proxy
// would lay out.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1EndpointConditions, V1EndpointSlice, V1Service } from '@kubernetes/client-node';
import { desiredVirtualServices } from '../../src/k8s/mapping.js';
import { endpointCondition, toServiceRecord, toSliceRecord } from '../../src/k8s/records.js';
import type { DesiredVirtualService } from '../../src/reconcile/types.js';

function svc(spec: V1Service['spec'], status?: V1Service['status']): V1Service {
  return { metadata: { namespace: 'shop', name: 'web', resourceVersion: '7' }, spec, status };
}

function slice(
  name: string,
  addressType: string,
  ports: { name?: string; port?: number; protocol?: string }[],
  endpoints: { ip: string; conditions?: V1EndpointConditions }[],
  serviceName = 'web',
): V1EndpointSlice {
  return {
    metadata: { namespace: 'shop', name, labels: { 'kubernetes.io/service-name': serviceName } },
    addressType,
    ports,
    endpoints: endpoints.map((e) => ({ addresses: [e.ip], conditions: e.conditions })),
  };
}

const ready = { ready: true, serving: true, terminating: false };

const hostPort = (address: string, port: number) =>
  address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;

/** "tcp 10.96.0.10:80 -> 10.1.0.5:8080 ready, ..." per virtual service, sorted, for readable comparisons. */
function layout(service: V1Service, slices: V1EndpointSlice[] = [], nodeAddresses: string[] = []): string[] {
  return desiredVirtualServices(toServiceRecord(service), slices.map(toSliceRecord), nodeAddresses)
    .map((vs: DesiredVirtualService) => {
      assert.deepEqual(vs.service, { namespace: 'shop', name: 'web' });
      assert.equal(vs.key.kind, 'address');
      if (vs.key.kind !== 'address') return '';
      const backs = vs.endpoints.map((e) => `${hostPort(e.address, e.port)} ${e.condition}`).sort();
      return `${vs.key.protocol} ${hostPort(vs.key.address, vs.key.port)} -> ${backs.join(', ')}`.trim();
    })
    .sort();
}

describe('desiredVirtualServices', () => {
  const cases: { name: string; service: V1Service; slices?: V1EndpointSlice[]; nodes?: string[]; want: string[] }[] = [
    {
      name: 'ClusterIP, unnamed port, endpoints on the target port',
      service: svc({ clusterIP: '10.96.0.10', clusterIPs: ['10.96.0.10'], ports: [{ port: 80, protocol: 'TCP' }] }),
      slices: [slice('web-a', 'IPv4', [{ name: '', port: 8080, protocol: 'TCP' }], [{ ip: '10.1.0.5' }])],
      want: ['tcp 10.96.0.10:80 -> 10.1.0.5:8080 ready'],
    },
    {
      name: 'only spec.clusterIP (written before dual-stack), protocol defaulted to TCP',
      service: svc({ clusterIP: '10.96.0.11', ports: [{ port: 80 }] }),
      slices: [slice('web-a', 'IPv4', [{ name: '', port: 8080 }], [{ ip: '10.1.0.5' }])],
      want: ['tcp 10.96.0.11:80 -> 10.1.0.5:8080 ready'],
    },
    {
      name: 'dual-stack: one virtual service per family, endpoints of that family only',
      service: svc({ clusterIPs: ['10.96.0.10', 'fd00:96::a'], ports: [{ name: 'http', port: 80, protocol: 'TCP' }] }),
      slices: [
        slice('web-v4', 'IPv4', [{ name: 'http', port: 8080 }], [{ ip: '10.1.0.5', conditions: ready }]),
        slice('web-v6', 'IPv6', [{ name: 'http', port: 8080 }], [{ ip: 'fd00:1::5', conditions: ready }]),
      ],
      want: ['tcp 10.96.0.10:80 -> 10.1.0.5:8080 ready', 'tcp [fd00:96::a]:80 -> [fd00:1::5]:8080 ready'],
    },
    {
      name: 'externalIPs and load-balancer ingress of the cluster IP family; ipMode Proxy and hostname-only skipped',
      service: svc(
        {
          type: 'LoadBalancer',
          clusterIPs: ['10.96.0.10'],
          externalIPs: ['192.0.2.10', '2001:db8::10'],
          ports: [{ port: 443, protocol: 'TCP' }],
        },
        {
          loadBalancer: {
            ingress: [
              { ip: '198.51.100.1' },
              { ip: '198.51.100.2', ipMode: 'VIP' },
              { ip: '198.51.100.3', ipMode: 'Proxy' },
              { hostname: 'lb.example.com' },
            ],
          },
        },
      ),
      want: ['tcp 10.96.0.10:443 ->', 'tcp 192.0.2.10:443 ->', 'tcp 198.51.100.1:443 ->', 'tcp 198.51.100.2:443 ->'],
    },
    {
      name: 'NodePort on each node address of the family, UDP and SCTP',
      service: svc({
        type: 'NodePort',
        clusterIPs: ['10.96.0.53'],
        ports: [
          { name: 'dns', port: 53, protocol: 'UDP', nodePort: 30053 },
          { name: 'sig', port: 2905, protocol: 'SCTP', nodePort: 32905 },
        ],
      }),
      slices: [
        slice(
          'web-a',
          'IPv4',
          [
            { name: 'dns', port: 5353, protocol: 'UDP' },
            { name: 'sig', port: 2905, protocol: 'SCTP' },
          ],
          [{ ip: '10.1.0.7' }],
        ),
      ],
      nodes: ['192.168.1.10', '10.0.0.4', 'fd00::4'],
      want: [
        'sctp 10.0.0.4:32905 -> 10.1.0.7:2905 ready',
        'sctp 10.96.0.53:2905 -> 10.1.0.7:2905 ready',
        'sctp 192.168.1.10:32905 -> 10.1.0.7:2905 ready',
        'udp 10.0.0.4:30053 -> 10.1.0.7:5353 ready',
        'udp 10.96.0.53:53 -> 10.1.0.7:5353 ready',
        'udp 192.168.1.10:30053 -> 10.1.0.7:5353 ready',
      ],
    },
    {
      name: 'an external IP that is also a node address gives one virtual service',
      service: svc({ clusterIPs: ['10.96.0.10'], externalIPs: ['10.0.0.4'], ports: [{ port: 80, nodePort: 80 }] }),
      nodes: ['10.0.0.4'],
      want: ['tcp 10.0.0.4:80 ->', 'tcp 10.96.0.10:80 ->'],
    },
    {
      name: 'named ports match by name and protocol, not by number; unnamed and unknown names match nothing else',
      service: svc({
        clusterIPs: ['10.96.0.10'],
        ports: [
          { name: 'http', port: 80, protocol: 'TCP' },
          { name: 'metrics', port: 9090, protocol: 'TCP' },
          { name: 'dns', port: 53, protocol: 'TCP' },
        ],
      }),
      slices: [
        slice(
          'web-a',
          'IPv4',
          [
            { name: 'http', port: 8080, protocol: 'TCP' },
            { name: 'metrics', port: 9100, protocol: 'TCP' },
            { name: 'dns', port: 5353, protocol: 'UDP' },
            { name: 'other', port: 80, protocol: 'TCP' },
            { port: 9090, protocol: 'TCP' },
          ],
          [{ ip: '10.1.0.5' }],
        ),
      ],
      want: [
        'tcp 10.96.0.10:53 ->',
        'tcp 10.96.0.10:80 -> 10.1.0.5:8080 ready',
        'tcp 10.96.0.10:9090 -> 10.1.0.5:9100 ready',
      ],
    },
    {
      name: 'slices merged; a duplicate endpoint keeps its most serving condition; ports may differ per slice',
      service: svc({ clusterIPs: ['10.96.0.10'], ports: [{ name: 'http', port: 80 }] }),
      slices: [
        slice('web-a', 'IPv4', [{ name: 'http', port: 8080 }], [
          { ip: '10.1.0.5', conditions: { ready: false, serving: false } },
          { ip: '10.1.0.6', conditions: ready },
        ]),
        slice('web-b', 'IPv4', [{ name: 'http', port: 8080 }], [
          { ip: '10.1.0.5', conditions: { ready: false, serving: true, terminating: true } },
          { ip: '10.1.0.7', conditions: ready },
        ]),
        slice('web-c', 'IPv4', [{ name: 'http', port: 9090 }], [{ ip: '10.1.0.5', conditions: ready }]),
      ],
      want: [
        'tcp 10.96.0.10:80 -> 10.1.0.5:8080 terminating-serving, 10.1.0.5:9090 ready, ' +
          '10.1.0.6:8080 ready, 10.1.0.7:8080 ready',
      ],
    },
    {
      name: 'endpoint conditions as kube-proxy reads them (absent serving is serving)',
      service: svc({ clusterIPs: ['10.96.0.10'], ports: [{ port: 80 }] }),
      slices: [
        slice('web-a', 'IPv4', [{ name: '', port: 80 }], [
          { ip: '10.1.0.1' },
          { ip: '10.1.0.2', conditions: { ready: true, terminating: true } },
          { ip: '10.1.0.3', conditions: { ready: false, serving: true, terminating: true } },
          { ip: '10.1.0.4', conditions: { ready: false, serving: false, terminating: true } },
          { ip: '10.1.0.5', conditions: { ready: false } },
          { ip: '10.1.0.6', conditions: { ready: false, serving: false } },
        ]),
      ],
      want: [
        'tcp 10.96.0.10:80 -> 10.1.0.1:80 ready, 10.1.0.2:80 ready, 10.1.0.3:80 terminating-serving, ' +
          '10.1.0.4:80 not-serving, 10.1.0.5:80 terminating-serving, 10.1.0.6:80 not-serving',
      ],
    },
    {
      name: 'headless Service: nothing',
      service: svc({ clusterIP: 'None', clusterIPs: ['None'], ports: [{ port: 80 }] }),
      slices: [slice('web-a', 'IPv4', [{ name: '', port: 80 }], [{ ip: '10.1.0.5' }])],
      want: [],
    },
    {
      name: 'ExternalName Service: nothing',
      service: svc({ type: 'ExternalName', externalName: 'db.example.com', ports: [{ port: 5432 }] }),
      want: [],
    },
    {
      name: 'no selector, hand-made slice carrying the label',
      service: svc({ clusterIPs: ['10.96.0.20'], ports: [{ name: 'pg', port: 5432 }] }),
      slices: [slice('web-manual', 'IPv4', [{ name: 'pg', port: 5432 }], [{ ip: '192.0.2.50' }])],
      want: ['tcp 10.96.0.20:5432 -> 192.0.2.50:5432 ready'],
    },
    {
      name: 'FQDN slices ignored',
      service: svc({ clusterIPs: ['10.96.0.10'], ports: [{ port: 80 }] }),
      slices: [slice('web-fqdn', 'FQDN', [{ name: '', port: 80 }], [{ ip: 'backend.example.com' }])],
      want: ['tcp 10.96.0.10:80 ->'],
    },
  ];

  for (const c of cases) {
    it(c.name, () => assert.deepEqual(layout(c.service, c.slices, c.nodes), c.want));
  }

  it('shares one endpoint array between the virtual services of a port and family', () => {
    const vss = desiredVirtualServices(
      toServiceRecord(svc({ clusterIPs: ['10.96.0.10'], externalIPs: ['192.0.2.1'], ports: [{ port: 80 }] })),
      [toSliceRecord(slice('web-a', 'IPv4', [{ name: '', port: 80 }], [{ ip: '10.1.0.5' }]))],
      [],
    );
    assert.equal(vss.length, 2);
    assert.equal(vss[0]?.endpoints, vss[1]?.endpoints);
  });
});

describe('records', () => {
  it('keep only the fields the agent needs', () => {
    const service = toServiceRecord({
      metadata: { namespace: 'shop', name: 'web', resourceVersion: '9', annotations: { big: 'x'.repeat(1000) } },
      spec: {
        clusterIPs: ['10.96.0.10'],
        selector: { app: 'web' },
        ports: [{ name: 'h', port: 80, targetPort: 8080 }],
      },
    });
    assert.deepEqual(
      { ...service },
      {
        namespace: 'shop',
        name: 'web',
        resourceVersion: '9',
        clusterIPs: ['10.96.0.10'],
        externalIPs: [],
        loadBalancerIPs: [],
        ports: [{ name: 'h', protocol: 'tcp', port: 80, nodePort: 0 }],
      },
    );
    const endpoints = [{ ip: 'fd00::5', conditions: ready }, { ip: '10.1.0.5' }];
    const s = toSliceRecord(slice('web-a', 'IPv6', [{ name: 'h', port: 8080 }], endpoints));
    assert.deepEqual(
      { ...s },
      {
        namespace: 'shop',
        name: 'web-a',
        resourceVersion: '',
        serviceName: 'web',
        family: 'ipv6',
        ports: [{ name: 'h', protocol: 'tcp', port: 8080 }],
        endpoints: [{ address: 'fd00::5', condition: 'ready' }],
      },
    );
  });

  it('read endpoint conditions as kube-proxy does: ready and serving absent are true, terminating absent false', () => {
    const table: [V1EndpointConditions | undefined, string][] = [
      [undefined, 'ready'],
      [{}, 'ready'],
      [{ ready: true }, 'ready'],
      [{ ready: true, serving: true, terminating: true }, 'ready'],
      [{ ready: false, serving: true, terminating: true }, 'terminating-serving'],
      // kube-proxy: serving == nil is serving, so a terminating endpoint without the field still gets traffic.
      [{ ready: false, terminating: true }, 'terminating-serving'],
      [{ ready: false, serving: null as unknown as undefined, terminating: true }, 'terminating-serving'],
      // Neither ready nor terminating but serving: no controller writes it; nothing gets deleted on it.
      [{ ready: false, serving: true }, 'terminating-serving'],
      [{ ready: false }, 'terminating-serving'],
      [{ ready: false, serving: false, terminating: true }, 'not-serving'],
      [{ ready: false, serving: false }, 'not-serving'],
    ];
    for (const [conditions, want] of table) {
      assert.equal(endpointCondition(conditions), want, JSON.stringify(conditions));
    }
  });
});

