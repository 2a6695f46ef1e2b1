// Builds and tears down the benchmark's big IPVS tables. One request per datagram, as IpvsClient sends them and as
// `ipvsadm -R` does (it even opens a socket and resolves the family for every rule), cost about 4 ms a rule under
// emulation: over 7 minutes for 110,000 rules. The kernel takes many requests in one datagram and answers only the
// ones that fail, so the same table goes in a few hundred sendto() calls.
import {
  closeFd,
  openNetlink,
  receiveNow,
  sendToKernel,
  setIntOption,
  SOL_SOCKET,
  SO_RCVBUF,
} from '../../native/libc.js';
import { describeServiceKey } from '../../src/agent/names.js';
import { encodeDestSpec, encodeServiceKey, encodeServiceSpec } from '../../src/ipvs/codec.js';
import type { DestinationSpec, ServiceKey, ServiceSpec } from '../../src/ipvs/types.js';
import {
  commandAttributes,
  commandNames,
  IPVS_CMD_DEL_SERVICE,
  IPVS_CMD_NEW_DEST,
  IPVS_CMD_NEW_SERVICE,
  IPVS_GENL_NAME,
  IPVS_GENL_VERSION,
} from '../../src/ipvs/wire.js';
import { encodeAttributes, type AttributeValues } from '../../src/netlink/attributes.js';
import { NetlinkError } from '../../src/netlink/errors.js';
import { encodeGenl, NETLINK_GENERIC, resolveFamily } from '../../src/netlink/genl.js';
import { encodeMessage, NLM_F_ACK, NLM_F_REQUEST, NLMSG_ERROR, parseErrorPayload, parseMessages } from '../../src/netlink/message.js';
import { NetlinkSocket } from '../../src/netlink/socket.js';

/** Well below the socket's send buffer, so one datagram never blocks or fails with EMSGSIZE. */
const DATAGRAM_BYTES = 64 * 1024;

export class KernelTableWriter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private seq = 0;
  /** What each sequence number asked for, to name a failure; cleared once the kernel has answered. */
  private readonly operations = new Map<number, { cmd: number; service: ServiceKey }>();
  private readonly buffer = Buffer.alloc(64 * 1024);

  private constructor(
    private readonly fd: number,
    private readonly portId: number,
    private readonly familyId: number,
  ) {}

  static async open(): Promise<KernelTableWriter> {
    const resolver = NetlinkSocket.open(NETLINK_GENERIC);
    let familyId: number;
    try {
      ({ id: familyId } = await resolveFamily(resolver, IPVS_GENL_NAME));
    } finally {
      resolver.close();
    }
    const { fd, portId } = openNetlink(NETLINK_GENERIC);
    setIntOption(fd, SOL_SOCKET, SO_RCVBUF, 4 * 1024 * 1024);
    return new KernelTableWriter(fd, portId, familyId);
  }

  createService(spec: ServiceSpec): void {
    this.add(IPVS_CMD_NEW_SERVICE, spec.key, { service: encodeServiceSpec(spec) });
  }

  createDestination(service: ServiceKey, dest: DestinationSpec): void {
    this.add(IPVS_CMD_NEW_DEST, service, { service: encodeServiceKey(service), dest: encodeDestSpec(service, dest) });
  }

  deleteService(key: ServiceKey): void {
    this.add(IPVS_CMD_DEL_SERVICE, key, { service: encodeServiceKey(key) });
  }

  /** Sends what is queued; rejects with the first request the kernel refused. */
  flush(): void {
    // The last request asks for an ACK: once it is read, every earlier failure has been read too.
    const last = this.pending.at(-1);
    if (last) last.writeUInt16LE(last.readUInt16LE(6) | NLM_F_ACK, 6);
    this.send();
    const lastSeq = this.seq;
    while (this.operations.size > 0) {
      const got = receiveNow(this.fd, this.buffer);
      // The kernel handles a datagram inside sendto(): all answers are queued by the time it returns.
      if (got.kind === 'empty') throw new Error(`IPVS batch: no ACK for request ${lastSeq}`);
      for (const msg of parseMessages(this.buffer.subarray(0, got.length))) {
        if (msg.type !== NLMSG_ERROR || msg.portId !== this.portId) continue;
        const { errno, extAck } = parseErrorPayload(msg);
        if (errno !== 0) throw new NetlinkError(errno, this.describe(msg.seq), extAck);
        if (msg.seq === lastSeq) this.operations.clear();
      }
    }
  }

  close(): void {
    closeFd(this.fd);
  }

  private describe(seq: number): string {
    const op = this.operations.get(seq);
    return op ? `IPVS ${commandNames[op.cmd]} ${describeServiceKey(op.service)}` : `IPVS request ${seq}`;
  }

  private add(cmd: number, service: ServiceKey, values: AttributeValues<typeof commandAttributes>): void {
    const seq = ++this.seq;
    const payload = encodeGenl(cmd, IPVS_GENL_VERSION, encodeAttributes(commandAttributes, values));
    const message = encodeMessage(this.familyId, NLM_F_REQUEST, seq, this.portId, payload);
    if (this.pendingBytes + message.length > DATAGRAM_BYTES) this.send();
    this.pending.push(message);
    this.pendingBytes += message.length;
    this.operations.set(seq, { cmd, service });
  }

  private send(): void {
    if (this.pending.length === 0) return;
    sendToKernel(this.fd, Buffer.concat(this.pending));
    this.pending = [];
    this.pendingBytes = 0;
  }
}
