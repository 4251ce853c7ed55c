/**
 * Router Advertisement codec (RFC 4861 §4.2) for the options a PvD-aware host reads: the PvD
 * option (RFC 8801 §3.1, type 21), RDNSS and DNSSL (RFC 8106, types 25 and 31), Prefix
 * Information (RFC 4861 §4.6.2, type 3) and Encrypted DNS / DNR (RFC 9463 §6.1, type 144).
 * Every other option is kept as raw bytes, so that decode → encode gives back the same frame.
 *
 * Decoding never throws: every problem is a returned {@linkcode Rejection} with a code from a
 * closed set and a human reason. Every length is checked against the enclosing length before it
 * is used. The rules:
 *
 * - An option of length 0, or one that runs past the end of the message, makes the whole RA
 *   invalid (RFC 4861 §4.6: "Nodes MUST silently discard an ND packet that contains an option
 *   with length zero"); the same inside a PvD option makes that PvD option invalid.
 * - A PvD option inside a PvD option (RFC 8801 §3.2: they MUST NOT nest) makes the outer one
 *   invalid. An RA whose first PvD option is invalid is rejected whole: what it carried was meant
 *   for the explicit PvD and must not fall to the implicit one.
 * - Any other option that fails its own checks (a compressed or over-long name, an RDNSS of even
 *   length, a DNR option with an IP hint, …) is dropped alone; the RA keeps the rest and lists
 *   the dropped option in `rejected`.
 *
 * Names are decoded to presentation form with a trailing dot, letter case as sent (callers
 * compare case-insensitively). Only letters, digits, `-` and `_` are accepted in labels: a PvD
 * ID or an ADN ends up in a URL and a TLS name, and nothing else belongs in a search domain.
 *
 * Encoding is for tests and the RA sender of the end-to-end test: it throws a `TypeError` on
 * values that cannot be put on the wire (a name too long, an address that does not parse).
 *
 * This file holds the PvD option, the dispatch by option type and the RA itself; the decoded
 * shapes are in ra_types.ts, the option families in ra_options.ts (PIO, RDNSS, DNSSL) and
 * ra_dnr.ts (DNR), the octets, addresses and names in ra_wire.ts.
 *
 * @module
 */

import { decodeDnr, encodeDnrBody } from "./ra_dnr.ts";
import {
  decodeDnssl,
  decodePio,
  decodeRdnss,
  encodeDnsslBody,
  encodePioBody,
  encodeRdnssBody,
} from "./ra_options.ts";
import {
  type Decoded,
  type NdOption,
  OptionType,
  type PvdOption,
  type RaHeader,
  type Rejection,
  type RouterAdvertisement,
} from "./ra_types.ts";
import {
  concat,
  dv,
  encodeName,
  fail,
  guard,
  isHostName,
  option,
  readHeader,
  readName,
  splitOptions,
  withoutOk,
  writeHeader,
} from "./ra_wire.ts";

/** Decodes a PvD option; rejections of the options it embeds go to `rejected`. */
function decodePvd(o: Uint8Array, rejected: Rejection[]): PvdOption {
  if (o.length < 8) fail("bad-length", "PvD option shorter than 8 octets");
  const v = dv(o);
  const flags = v.getUint16(2);
  const { name: id, next } = readName(o, 6, o.length, "PvD ID");
  if (!isHostName(id)) fail("bad-pvd-id", `PvD ID ${id} is not a host name`);
  let off = (next + 7) & ~7;
  if (off > o.length) fail("truncated", "PvD ID padding runs past the end of the option");
  const r = (flags & 0x2000) !== 0;
  let raHeader: RaHeader | undefined;
  if (r) {
    if (off + 16 > o.length) fail("truncated", "PvD option has R=1 but no room for an RA header");
    raHeader = readHeader(o, off);
    off += 16;
  }
  const options: NdOption[] = [];
  for (const inner of splitOptions(o, off, o.length, "inside the PvD option")) {
    if (inner[0] === OptionType.PVD) fail("nested-pvd", "a PvD option inside a PvD option");
    const d = decodeOptionBytes(inner, true, rejected);
    if (d.ok) options.push(d.value);
    else rejected.push(withoutOk(d));
  }
  return {
    kind: "pvd",
    h: (flags & 0x8000) !== 0,
    l: (flags & 0x4000) !== 0,
    r,
    reserved: (flags & 0x1ff0) >> 4,
    delay: flags & 0x000f,
    seq: v.getUint16(4),
    id,
    ...(raHeader ? { raHeader } : {}),
    options,
  };
}

/** Decodes one option; rejections of options embedded in a PvD option go to `rejected`. */
function decodeOptionBytes(
  o: Uint8Array,
  inPvd: boolean,
  rejected: Rejection[],
): Decoded<NdOption> {
  const type = o[0]!;
  return guard(
    (): NdOption => {
      switch (type) {
        case OptionType.PIO:
          return decodePio(o);
        case OptionType.RDNSS:
          return decodeRdnss(o);
        case OptionType.DNSSL:
          return decodeDnssl(o);
        case OptionType.DNR:
          return decodeDnr(o);
        case OptionType.PVD:
          return decodePvd(o, rejected);
        default:
          return { kind: "unknown", type, data: o.slice(2) };
      }
    },
    type,
    inPvd,
  );
}

/**
 * Decodes one whole option (type, length, body): `bytes.length` must be the option's length.
 *
 * Rejections of options embedded in a PvD option are not reported here (only by
 * {@linkcode decodeRa}); the PvD option is returned without them.
 */
export function decodeOption(bytes: Uint8Array): Decoded<NdOption> {
  if (bytes.length < 2) return { ok: false, code: "truncated", reason: "option shorter than 2" };
  const type = bytes[0]!, units = bytes[1]!;
  if (units === 0) {
    return {
      ok: false,
      code: "zero-length",
      reason: `option type ${type} has length 0`,
      optionType: type,
    };
  }
  if (units * 8 !== bytes.length) {
    const code = units * 8 > bytes.length ? "truncated" : "bad-length";
    return {
      ok: false,
      code,
      reason: `option type ${type} says ${units * 8} octets, has ${bytes.length}`,
      optionType: type,
    };
  }
  return decodeOptionBytes(bytes, false, []);
}

/** Decodes an ICMPv6 Router Advertisement (the ICMPv6 message, from its type octet). */
/** Decodes an ICMPv6 Router Advertisement (the ICMPv6 message, from its type octet). */
export function decodeRa(message: Uint8Array): Decoded<RouterAdvertisement> {
  return guard(() => {
    if (message.length < 16) fail("truncated", `RA of ${message.length} octets (under 16)`);
    if (message[0] !== 134) fail("not-ra", `ICMPv6 type ${message[0]} is not 134`);
    if (message[1] !== 0) fail("not-ra", `RA with code ${message[1]}`);
    const header = readHeader(message, 0);
    const options: NdOption[] = [];
    const rejected: Rejection[] = [];
    let sawPvd = false;
    for (const o of splitOptions(message, 16, message.length, "RA")) {
      const inner: Rejection[] = [];
      const d = decodeOptionBytes(o, false, inner);
      if (d.ok) {
        options.push(d.value);
        rejected.push(...inner);
        if (d.value.kind === "pvd") sawPvd = true;
      } else if (o[0] === OptionType.PVD && !sawPvd) {
        fail(d.code, `first PvD option rejected: ${d.reason}`);
      } else {
        rejected.push(withoutOk(d));
      }
    }
    return { header, options, rejected };
  });
}

/** Encodes one option. @throws {TypeError} on values that cannot be encoded */
export function encodeOption(o: NdOption): Uint8Array {
  switch (o.kind) {
    case "pio":
      return option(OptionType.PIO, encodePioBody(o));
    case "rdnss":
      return option(OptionType.RDNSS, encodeRdnssBody(o));
    case "dnssl":
      return option(OptionType.DNSSL, encodeDnsslBody(o));
    case "dnr":
      return option(OptionType.DNR, encodeDnrBody(o));
    case "pvd": {
      if (o.r !== (o.raHeader !== undefined)) {
        throw new TypeError("PvD option: R must be set exactly when an RA header is given");
      }
      const id = encodeName(o.id);
      const head = new Uint8Array(((6 + id.length + 7) & ~7) - 2);
      const v = dv(head);
      const flags = (o.h ? 0x8000 : 0) | (o.l ? 0x4000 : 0) | (o.r ? 0x2000 : 0) |
        ((o.reserved & 0x1ff) << 4) | (o.delay & 0xf);
      v.setUint16(0, flags);
      v.setUint16(2, o.seq);
      head.set(id, 4);
      const parts: Uint8Array[] = [head];
      if (o.raHeader) {
        const h = new Uint8Array(16);
        writeHeader(h, 0, o.raHeader);
        parts.push(h);
      }
      for (const inner of o.options) {
        if (inner.kind === "pvd") throw new TypeError("PvD options must not nest");
        parts.push(encodeOption(inner));
      }
      return option(OptionType.PVD, concat(parts));
    }
    case "unknown":
      if ((o.data.length + 2) % 8) throw new TypeError("unknown option data not 8n-2 octets");
      return option(o.type, o.data);
  }
}

/** Encodes an RA (the ICMPv6 message; the checksum is written as given in the header). */
export function encodeRa(ra: Pick<RouterAdvertisement, "header" | "options">): Uint8Array {
  const head = new Uint8Array(16);
  writeHeader(head, 0, ra.header);
  return concat([head, ...ra.options.map(encodeOption)]);
}
