/**
 * EDNS(0) padding (RFC 7830, option 12) with the block-length policy of RFC 8467: queries sent
 * over an encrypted wire are padded to a multiple of 128 octets, answers pvdns itself sends over
 * an encrypted wire (the control API's DoH endpoint) to a multiple of 468, so that a message's
 * length does not give away the length of the name in it. Never used on Do53: RFC 7830 §6
 * forbids padding in clear text, where it would only waste bytes.
 *
 * @module
 */

/** RFC 8467 §4.1: clients pad queries to the next multiple of 128 octets. */
export const QUERY_BLOCK = 128;
/** RFC 8467 §4.1: responders pad responses to the next multiple of 468 octets. */
export const RESPONSE_BLOCK = 468;

const OPT = 41;
const PADDING = 12;

/**
 * `message` padded to a multiple of `block` octets with a Padding option in its OPT record. The
 * caller vouches that the message ends with an OPT record with empty RDATA, as every query pvdns
 * builds and every reply it renders for an EDNS(0) client do (`wire.ts` writeOpt); a message
 * whose last 11 octets are not such a record is returned unchanged.
 *
 * @param message A DNS message in wire form.
 * @param block The block length.
 * @returns A new, longer array, or `message` itself when it cannot be padded.
 */
export function padMessage(message: Uint8Array, block: number): Uint8Array {
  const at = message.length - 11;
  const arCount = message.length >= 12 ? message[10]! << 8 | message[11]! : 0;
  if (
    at < 12 || arCount === 0 || message[at] !== 0 ||
    (message[at + 1]! << 8 | message[at + 2]!) !== OPT ||
    message[at + 9] !== 0 || message[at + 10] !== 0
  ) {
    return message;
  }
  // The option header takes 4 octets; the padding fills the rest of the block.
  const padding = (block - ((message.length + 4) % block)) % block;
  if (message.length + 4 + padding > 65535) return message; // the largest DNS message
  const out = new Uint8Array(message.length + 4 + padding);
  out.set(message);
  const rdLength = 4 + padding;
  out[at + 9] = rdLength >> 8;
  out[at + 10] = rdLength & 0xff;
  let o = message.length;
  out[o++] = 0;
  out[o++] = PADDING;
  out[o++] = padding >> 8;
  out[o++] = padding & 0xff; // the padding octets are already 0 (RFC 7830 §3: SHOULD be 0)
  return out;
}
