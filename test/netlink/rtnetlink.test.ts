// rtnetlink addresses on the host's real kernel: the codec byte for byte, the dump against iproute2's own listing,
// and the RTM_NEWADDR / RTM_DELADDR subscription inside a network namespace of the test's own (unshare -n), where
// adding addresses touches nothing of the host's.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeAddress } from '../../src/ipvs/address.js';
import {
  decodeAddressMessage,
  RouteNetlink,
  RTM_DELADDR,
  RTM_NEWADDR,
  RTM_NEWLINK,
} from '../../src/netlink/rtnetlink.js';

const msg = (type: number, hex: string) => ({ type, flags: 0, seq: 0, portId: 0, payload: Buffer.from(hex.replace(/\s/g, ''), 'hex') });

describe('rtnetlink address messages', () => {
  it('decodes an IPv4 RTM_NEWADDR: IFA_LOCAL wins over IFA_ADDRESS (a point-to-point peer), label kept', () => {
    // ifaddrmsg: AF_INET, /32, flags 0x80, scope 0, ifindex 7
    // IFA_ADDRESS 10.0.0.254, IFA_LOCAL 10.0.0.1, IFA_LABEL "ppp0", IFA_FLAGS 0x80
    const m = decodeAddressMessage(msg(RTM_NEWADDR, `02 20 80 00 07000000
      0800 0100 0a0000fe  0800 0200 0a000001  0900 0300 70707030 00000000  0800 0800 80000000`));
    assert.deepEqual({ ...m, address: m && decodeAddress(m.family, m.address) }, {
      change: 'added', family: 'ipv4', prefixLength: 32, ifindex: 7, address: '10.0.0.1', label: 'ppp0',
    });
  });

  it('decodes an IPv6 RTM_DELADDR with IFA_ADDRESS only', () => {
    const m = decodeAddressMessage(msg(RTM_DELADDR, `0a 40 00 00 02000000
      1400 0100 fd000000000000000000000000000004`));
    assert.deepEqual({ ...m, address: m && decodeAddress(m.family, m.address) }, {
      change: 'removed', family: 'ipv6', prefixLength: 64, ifindex: 2, address: 'fd00::4',
    });
  });

  it('skips other families and refuses malformed messages', () => {
    assert.equal(decodeAddressMessage(msg(RTM_NEWADDR, '11 00 00 00 01000000')), undefined); // AF_PACKET
    assert.throws(() => decodeAddressMessage(msg(RTM_NEWADDR, '02 20 00')), /shorter than its ifaddrmsg/);
    assert.throws(() => decodeAddressMessage(msg(RTM_NEWADDR, '02 20 00 00 01000000 0700 0200 0a0000')), /4-byte address/);
    assert.throws(() => decodeAddressMessage(msg(RTM_NEWLINK, '02 20 00 00 01000000')), /not an address message/);
  });
});

describe('rtnetlink on the host kernel', () => {
  it('the address dump lists what `ip -j address` lists', async () => {
    const route = RouteNetlink.open();
    try {
      const ours = (await route.addresses()).map((m) => `${m.ifindex} ${decodeAddress(m.family, m.address)}/${m.prefixLength}`);
      const links = JSON.parse(execFileSync('ip', ['-j', 'address', 'show'], { encoding: 'utf8' })) as Array<{
        ifindex: number;
        addr_info: Array<{ family: string; local: string; prefixlen: number }>;
      }>;
      const theirs = links.flatMap((l) =>
        l.addr_info.filter((a) => a.family === 'inet' || a.family === 'inet6').map((a) => `${l.ifindex} ${a.local}/${a.prefixlen}`),
      );
      assert.ok(theirs.length > 0);
      assert.deepEqual(ours.sort(), theirs.sort());
    } finally {
      route.close();
    }
  });

  it('looks a link index up by name; a missing link is undefined', async () => {
    const route = RouteNetlink.open();
    try {
      const [lo] = JSON.parse(execFileSync('ip', ['-j', 'link', 'show', 'lo'], { encoding: 'utf8' })) as Array<{ ifindex: number }>;
      assert.equal(await route.linkIndex('lo'), lo!.ifindex);
      assert.equal(await route.linkIndex('kube-ipvs0-no'), undefined);
    } finally {
      route.close();
    }
  });

  it('follows RTM_NEWADDR / RTM_DELADDR in a namespace of its own: added and removed node addresses are reported', async () => {
    const child = spawn('unshare', ['-n', process.execPath, fileURLToPath(new URL('./rtnetlink-netns-child.js', import.meta.url))], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const lines: Record<string, unknown>[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => lines.push(JSON.parse(l) as Record<string, unknown>));
    const next = async (n: number) => {
      const deadline = Date.now() + 20_000;
      while (lines.length < n) {
        assert.ok(child.exitCode === null, `the child exited (${child.exitCode}) after ${JSON.stringify(lines)}`);
        assert.ok(Date.now() < deadline, `timed out after ${JSON.stringify(lines)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      return lines[n - 1];
    };
    const ip = (...args: string[]) => execFileSync('nsenter', ['-t', String(child.pid), '-n', 'ip', ...args]);
    try {
      // Only lo, down: 127.0.0.1 and ::1 are loopback, never node addresses.
      assert.deepEqual(await next(1), { ready: [] });
      ip('address', 'add', '10.9.0.5/32', 'dev', 'lo');
      assert.deepEqual(await next(2), { change: { added: ['10.9.0.5'], removed: [], current: ['10.9.0.5'] } });
      ip('address', 'add', 'fd00:9::5/128', 'dev', 'lo', 'nodad');
      assert.deepEqual(await next(3), { change: { added: ['fd00:9::5'], removed: [], current: ['10.9.0.5', 'fd00:9::5'] } });
      ip('address', 'del', '10.9.0.5/32', 'dev', 'lo');
      assert.deepEqual(await next(4), { change: { added: [], removed: ['10.9.0.5'], current: ['fd00:9::5'] } });
      // Loopback addresses change nothing: no line for them (the next line is the close).
      ip('address', 'add', '127.0.0.9/8', 'dev', 'lo');
      child.kill('SIGTERM');
      assert.deepEqual(await next(5), { closed: true });
    } finally {
      child.kill('SIGKILL');
    }
  });
});
