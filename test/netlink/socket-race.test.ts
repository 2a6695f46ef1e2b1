// Closing a socket while a request is in flight, then opening the next one (as IpvsClient does after a failure, with
// /healthz probing alongside the janitor): the new socket gets the old one's descriptor number and port id, and the
// old request must not read a single datagram from it. Uses the nlctrl family, which every Linux kernel has.
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { encodeAttributes } from '../../src/netlink/attributes.js';
import { ctrlAttributes, CTRL_CMD_GETFAMILY, encodeGenl, GENL_ID_CTRL, NETLINK_GENERIC, resolveFamily } from '../../src/netlink/genl.js';
import { NetlinkSocket } from '../../src/netlink/socket.js';

/** Every generic netlink family: several datagrams, so the request is still reading when it is closed. */
const dumpFamilies = {
  type: GENL_ID_CTRL,
  kind: 'dump',
  payload: encodeGenl(CTRL_CMD_GETFAMILY, 1, encodeAttributes(ctrlAttributes, {})),
  operation: 'nlctrl GETFAMILY dump',
  // Before the fix the old request waits out its deadline on the new socket's queue; keep that short.
  timeoutMs: 1_000,
} as const;

it('a request in flight on a closed socket stops, and the next socket on the same fd and port id gets every reply', async () => {
  const rounds = 20;
  for (let round = 0; round < rounds; round++) {
    const old = NetlinkSocket.open(NETLINK_GENERIC);
    let successor: NetlinkSocket | undefined;
    let successorAnswer: Promise<{ id: number }> | undefined;
    let replies = 0;
    const inFlight = old.request(dumpFamilies, () => {
      if (++replies > 1) return;
      // First reply of the dump: replace the socket now, with the rest of the dump still to read.
      old.close();
      successor = NetlinkSocket.open(NETLINK_GENERIC);
      successorAnswer = resolveFamily(successor, 'nlctrl');
    });
    try {
      await assert.rejects(inFlight, (err: unknown) => {
        assert.equal((err as Error).name, 'NetlinkClosedError', `round ${round}: the old request ended with ${String(err)}`);
        assert.equal((err as { sent?: boolean }).sent, true);
        return true;
      });
      assert.ok(successor && successorAnswer, 'the dump delivered no reply');
      assert.equal(successor.portId, old.portId, 'the kernel gave the new socket the old port id');
      assert.equal((await successorAnswer).id, GENL_ID_CTRL);
      // And it keeps working: nothing of its queue went to the old request.
      assert.equal((await resolveFamily(successor, 'nlctrl')).id, GENL_ID_CTRL);
    } finally {
      successor?.close();
    }
  }
});

it('a request queued behind one that is in flight is never sent once the socket closes', async () => {
  const socket = NetlinkSocket.open(NETLINK_GENERIC);
  let queued: Promise<unknown> | undefined;
  const first = socket.request(dumpFamilies, () => {
    queued ??= socket.request(dumpFamilies, () => undefined);
    socket.close();
  });
  await assert.rejects(first, { name: 'NetlinkClosedError', sent: true });
  await assert.rejects(queued!, { name: 'NetlinkClosedError', sent: false });
});
