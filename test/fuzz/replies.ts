// Recorded kernel answers (test/fixtures/ipvs-replies.json, made by test/fixtures/record-replies.ts) and the
// production decoding each of them goes through: the socket's readAnswer, then the reply decoder the client uses.
import { readFileSync } from 'node:fs';
import { isIPv4, isIPv6 } from 'node:net';
import { NetlinkError, NetlinkProtocolError } from '../../src/netlink/errors.js';
import { ctrlAttributes, genlAttributesStart, tableDecoder, type ReplyDecoder } from '../../src/netlink/genl.js';
import { readAnswer, type RequestKind } from '../../src/netlink/reply.js';
import { destReply, destWeightReply, serviceReply } from '../../src/ipvs/decode.js';
import type { AddressFamily } from '../../src/ipvs/types.js';
import { commandAttributes, infoAttributes } from '../../src/ipvs/wire.js';

/** Which decoder the client runs on this answer's replies. */
export type ReplyShape =
  | { kind: 'ctrl' }
  | { kind: 'info' }
  | { kind: 'config' }
  | { kind: 'service' }
  | { kind: 'dest'; family: AddressFamily }
  | { kind: 'ack' };

export interface RecordedExchange {
  operation: string;
  kind: RequestKind;
  seq: number;
  portId: number;
  shape: ReplyShape;
  /** Hex, in the order received. */
  datagrams: string[];
}

export interface RecordedReplies {
  recorded: string;
  kernel: string;
  exchanges: RecordedExchange[];
}

export function loadRecordedReplies(): RecordedReplies {
  return JSON.parse(readFileSync(new URL('../../../test/fixtures/ipvs-replies.json', import.meta.url), 'utf8')) as RecordedReplies;
}

function decodersFor(shape: ReplyShape): ReplyDecoder<unknown>[] {
  switch (shape.kind) {
    case 'ctrl':
      return [tableDecoder(ctrlAttributes)];
    case 'info':
      return [tableDecoder(infoAttributes)];
    case 'config':
    case 'ack':
      return [tableDecoder(commandAttributes)];
    case 'service':
      return [serviceReply];
    case 'dest':
      return [destReply(shape.family), destWeightReply(shape.family)];
  }
}

/** A decoder that returns instead of throwing must return something true to the wire: checked field by field. */
function checkDecoded(value: unknown): void {
  const v = value as { key?: { family: string; address?: string; port?: number }; family?: string; address?: string; port?: number; weight?: number };
  const checks: [string, unknown, (x: unknown) => boolean][] = [];
  const address = (family: string | undefined, text: unknown) => (family === 'ipv4' ? isIPv4(String(text)) : isIPv6(String(text)));
  const port = (x: unknown) => Number.isInteger(x) && (x as number) >= 0 && (x as number) <= 0xffff;
  if (v.key?.address !== undefined) checks.push(['service address', v.key.address, (x) => address(v.key?.family, x)]);
  if (v.key?.port !== undefined) checks.push(['service port', v.key.port, port]);
  if (v.address !== undefined) checks.push(['address', v.address, (x) => address(v.family, x)]);
  if (v.port !== undefined) checks.push(['port', v.port, port]);
  if (v.weight !== undefined) checks.push(['weight', v.weight, (x) => Number.isInteger(x)]);
  for (const [what, x, ok] of checks) {
    if (!ok(x)) throw new Error(`decoded an invalid ${what}: ${JSON.stringify(x)} in ${JSON.stringify(value, (_, y: unknown) => (typeof y === 'bigint' ? String(y) : y))}`);
  }
}

/** What one datagram did to the decoders: the only outcomes allowed. */
export type Outcome = 'decoded' | 'protocol error' | 'kernel error';

/** Runs one datagram of an answer through the socket's and the client's decoding. Throws anything unexpected. */
export function decodeDatagram(exchange: RecordedExchange, datagram: Buffer): Outcome {
  const decoders = decodersFor(exchange.shape);
  try {
    readAnswer(datagram, exchange, (msg) => {
      // An exact copy: a read past the message's end then fails loudly instead of reading the next message.
      const payload = Buffer.from(msg.payload);
      for (const decode of decoders) checkDecoded(decode(payload, genlAttributesStart(msg)));
    });
    return 'decoded';
  } catch (err) {
    if (err instanceof NetlinkProtocolError) return 'protocol error';
    if (err instanceof NetlinkError) return 'kernel error';
    throw err;
  }
}
