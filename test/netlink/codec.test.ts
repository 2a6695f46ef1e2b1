import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeAttributes, encodeAttributes, nested, string, u16, u32 } from '../../src/netlink/attributes.js';
import { NetlinkProtocolError } from '../../src/netlink/errors.js';
import { ctrlAttributes, CTRL_CMD_GETFAMILY, encodeGenl, GENL_ID_CTRL } from '../../src/netlink/genl.js';
import {
  encodeMessage,
  NLM_F_ACK,
  NLM_F_REQUEST,
  parseErrorPayload,
  parseMessages,
} from '../../src/netlink/message.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('netlink framing', () => {
  it('encodes a controller GETFAMILY request byte for byte', () => {
    const payload = encodeGenl(CTRL_CMD_GETFAMILY, 1, encodeAttributes(ctrlAttributes, { familyName: 'IPVS' }));
    const msg = encodeMessage(GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, 1, 0, payload);
    assert.deepEqual(
      msg,
      hex(`20000000 1000 0500 01000000 00000000
           03 01 0000
           0900 0200 49505653 00 000000`),
    );
  });

  it('splits a datagram into aligned messages', () => {
    const a = encodeMessage(0x20, 2, 7, 99, hex('010203'));
    const b = encodeMessage(3, 2, 7, 99, hex('00000000'));
    const msgs = parseMessages(Buffer.concat([a, b]));
    assert.equal(msgs.length, 2);
    assert.deepEqual(
      msgs.map((m) => [m.type, m.flags, m.seq, m.portId, m.payload.toString('hex')]),
      [
        [0x20, 2, 7, 99, '010203'],
        [3, 2, 7, 99, '00000000'],
      ],
    );
  });

  it('rejects a message whose length overruns the datagram', () => {
    const bad = hex('40000000 1000 0000 01000000 00000000');
    assert.throws(() => parseMessages(bad), NetlinkProtocolError);
    const tooShort = hex('08000000 1000 0000 01000000 00000000');
    assert.throws(() => parseMessages(tooShort), /message length 8/);
  });

  it('reads the errno and the extended-ack text of a capped NLMSG_ERROR', () => {
    // error -22 (EINVAL), echoed header only (NLM_F_CAPPED 0x100), then NLMSGERR_ATTR_MSG "bad attr"
    const payload = hex(`eaffffff  20000000 1000 0500 01000000 00000000
                         0d00 0100 62616420617474720000000000`);
    const [msg] = parseMessages(encodeMessage(2, 0x100 | 0x200, 1, 5, payload));
    assert.deepEqual(parseErrorPayload(msg!), { errno: 22, extAck: 'bad attr' });
  });

  it('reads an ACK as errno 0', () => {
    const [msg] = parseMessages(encodeMessage(2, 0x100, 1, 5, hex('00000000 20000000 1000 0500 01000000 00000000')));
    assert.deepEqual(parseErrorPayload(msg!), { errno: 0 });
  });
});

describe('attribute tables', () => {
  const inner = { a: [1, u32], b: [2, string] } as const;
  const outer = { n: [1, nested(inner)], x: [3, u16] } as const;

  it('encodes nests with NLA_F_NESTED and pads every attribute to 4 bytes', () => {
    assert.deepEqual(
      encodeAttributes(outer, { n: { a: 5, b: 'hi' }, x: 0x1234 }),
      hex(`1400 0180  0800 0100 05000000  0700 0200 686900 00
           0600 0300 3412 0000`),
    );
  });

  it('decodes what it encodes and skips attribute types it does not know', () => {
    const known = encodeAttributes(outer, { n: { a: 7, b: 'ok' }, x: 9 });
    const unknown = hex('0800 0900 ffffffff');
    assert.deepEqual(decodeAttributes(outer, Buffer.concat([unknown, known])), { n: { a: 7, b: 'ok' }, x: 9 });
  });

  it('reports an attribute that overruns its container or is too short for its type', () => {
    assert.throws(() => decodeAttributes(outer, hex('4000 0300 0000 0000')), /attribute length 64/);
    assert.throws(() => decodeAttributes(inner, hex('0600 0100 0100 0000')), /u32 attribute has 2 bytes/);
  });
});
