// The kernel IPVS client: typed operations over one generic netlink socket.
import type { AttributeValues } from '../netlink/attributes.js';
import { isErrno, NetlinkClosedError, NetlinkProtocolError, NetlinkTimeoutError } from '../netlink/errors.js';
import { GenericNetlinkFamily, NETLINK_GENERIC, resolveFamily, tableDecoder, type ReplyDecoder } from '../netlink/genl.js';
import { NetlinkSocket, type RequestKind } from '../netlink/socket.js';
import { encodeDestKey, encodeDestSpec, encodeServiceKey, encodeServiceSpec, required } from './codec.js';
import { destReply, destWeightReply, serviceReply } from './decode.js';
import { IpvsUnavailableError } from './errors.js';
import type {
  Destination,
  DestinationKey,
  DestinationSpec,
  DestinationWeight,
  IpvsApi,
  IpvsInfo,
  IpvsTimeouts,
  ServiceKey,
  ServiceSpec,
  VirtualService,
} from './types.js';
import {
  commandAttributes,
  commandNames,
  infoAttributes,
  IPVS_CMD_DEL_DEST,
  IPVS_CMD_DEL_SERVICE,
  IPVS_CMD_GET_CONFIG,
  IPVS_CMD_GET_DEST,
  IPVS_CMD_GET_INFO,
  IPVS_CMD_GET_SERVICE,
  IPVS_CMD_NEW_DEST,
  IPVS_CMD_NEW_SERVICE,
  IPVS_CMD_SET_DEST,
  IPVS_CMD_SET_SERVICE,
  IPVS_GENL_NAME,
  IPVS_GENL_VERSION,
} from './wire.js';

type Family = GenericNetlinkFamily<typeof commandAttributes>;

/** One socket and, once resolved, the IPVS family on it: replaced together, never one without the other. */
interface Connection {
  socket: NetlinkSocket;
  family: Promise<Family>;
}

function connect(): Connection {
  const socket = NetlinkSocket.open(NETLINK_GENERIC);
  const family = resolveFamily(socket, IPVS_GENL_NAME).then(
    ({ id }) => new GenericNetlinkFamily(socket, id, IPVS_GENL_VERSION, commandAttributes, IPVS_GENL_NAME, commandNames),
  );
  // Observed by run(); this keeps an early failure from counting as unhandled meanwhile.
  family.catch(() => undefined);
  return { socket, family };
}

/**
 * After a timeout, a lost datagram (ENOBUFS) or an unparsable reply the socket may still hold the rest of
 * an old answer (or an unfinished dump): it is replaced rather than trusted again.
 */
function poisonsSocket(err: unknown): boolean {
  return err instanceof NetlinkTimeoutError || err instanceof NetlinkProtocolError || isErrno(err, 'ENOBUFS');
}

const commandTable = tableDecoder(commandAttributes);

export class IpvsClient implements IpvsApi {
  private closed = false;

  private constructor(private connection: Connection) {}

  /** Rejects with IpvsUnavailableError when the kernel has no IPVS. */
  static async open(): Promise<IpvsClient> {
    const connection = connect();
    try {
      await connection.family;
      return new IpvsClient(connection);
    } catch (err) {
      connection.socket.close();
      throw isErrno(err, 'ENOENT') ? new IpvsUnavailableError() : err;
    }
  }

  /**
   * Runs one request on the current connection. Only a failure of the current connection replaces it: a request
   * that was still running on an older one (the janitor's, while /healthz probes) must not close the socket its
   * successor just opened. A request whose socket was replaced before it was sent runs again on the new one.
   */
  private async run<T>(
    kind: RequestKind,
    cmd: number,
    values: AttributeValues<typeof commandAttributes>,
    decode: ReplyDecoder<T>,
  ): Promise<T[]> {
    for (;;) {
      const connection = this.connection;
      let stage: 'resolving the family' | 'requesting' = 'resolving the family';
      try {
        const family = await connection.family;
        stage = 'requesting';
        return await family.request(kind, cmd, values, decode);
      } catch (err) {
        if (this.closed) throw err;
        if (connection !== this.connection) {
          if (err instanceof NetlinkClosedError && !err.sent) continue;
          throw err;
        }
        if (stage === 'resolving the family' || poisonsSocket(err)) this.replaceConnection();
        throw err;
      }
    }
  }

  private replaceConnection(): void {
    const old = this.connection;
    old.socket.close();
    try {
      this.connection = connect();
    } catch (err) {
      // No new socket (EMFILE, ENOMEM): requests fail with this error, and the next one tries to connect again.
      this.connection = { socket: old.socket, family: Promise.reject(err) };
      this.connection.family.catch(() => undefined);
    }
  }

  async info(): Promise<IpvsInfo> {
    const [reply] = await this.run('do', IPVS_CMD_GET_INFO, {}, tableDecoder(infoAttributes));
    const v = required(reply?.version, 'IPVS_INFO_ATTR_VERSION');
    return {
      version: `${(v >> 16) & 0xff}.${(v >> 8) & 0xff}.${v & 0xff}`,
      connectionTableSize: reply?.connTabSize ?? 0,
    };
  }

  async timeouts(): Promise<IpvsTimeouts> {
    const [reply] = await this.run('do', IPVS_CMD_GET_CONFIG, {}, commandTable);
    return {
      tcpSeconds: reply?.timeoutTcp ?? 0,
      tcpFinSeconds: reply?.timeoutTcpFin ?? 0,
      udpSeconds: reply?.timeoutUdp ?? 0,
    };
  }

  listServices(): Promise<VirtualService[]> {
    return this.run('dump', IPVS_CMD_GET_SERVICE, {}, serviceReply);
  }

  async getService(key: ServiceKey): Promise<VirtualService> {
    const [service] = await this.run('do', IPVS_CMD_GET_SERVICE, { service: encodeServiceKey(key) }, serviceReply);
    return required(service, 'IPVS_CMD_ATTR_SERVICE');
  }

  listDestinations(key: ServiceKey): Promise<Destination[]> {
    return this.run('dump', IPVS_CMD_GET_DEST, { service: encodeServiceKey(key) }, destReply(key.family));
  }

  listDestinationWeights(key: ServiceKey): Promise<DestinationWeight[]> {
    return this.run('dump', IPVS_CMD_GET_DEST, { service: encodeServiceKey(key) }, destWeightReply(key.family));
  }

  async createService(spec: ServiceSpec): Promise<void> {
    await this.run('do', IPVS_CMD_NEW_SERVICE, { service: encodeServiceSpec(spec) }, commandTable);
  }

  async updateService(spec: ServiceSpec): Promise<void> {
    await this.run('do', IPVS_CMD_SET_SERVICE, { service: encodeServiceSpec(spec) }, commandTable);
  }

  async deleteService(key: ServiceKey): Promise<void> {
    await this.run('do', IPVS_CMD_DEL_SERVICE, { service: encodeServiceKey(key) }, commandTable);
  }

  async createDestination(service: ServiceKey, dest: DestinationSpec): Promise<void> {
    const values = { service: encodeServiceKey(service), dest: encodeDestSpec(service, dest) };
    await this.run('do', IPVS_CMD_NEW_DEST, values, commandTable);
  }

  async updateDestination(service: ServiceKey, dest: DestinationSpec): Promise<void> {
    const values = { service: encodeServiceKey(service), dest: encodeDestSpec(service, dest) };
    await this.run('do', IPVS_CMD_SET_DEST, values, commandTable);
  }

  async deleteDestination(service: ServiceKey, dest: DestinationKey): Promise<void> {
    const values = { service: encodeServiceKey(service), dest: encodeDestKey(service, dest) };
    await this.run('do', IPVS_CMD_DEL_DEST, values, commandTable);
  }

  close(): void {
    this.closed = true;
    this.connection.socket.close();
  }
}
