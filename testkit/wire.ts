/**
 * Hand-made DNS payloads for tests: a minimal query encoder and a large TXT text.
 *
 * @module
 */

/** 3120 bytes of TXT text (over 3 KB) made of 240-byte pieces, each tagged with its number. */
export function bigTxt(tag = "t"): string {
  let s = "";
  for (let i = 0; s.length < 3072; i++) {
    s += `${tag}${String(i).padStart(3, "0")}-`.padEnd(240, "x");
  }
  return s;
}

/** A minimal query message: ID, RD, one question IN `type`. */
export function buildQuery(id: number, name: string, qtype = 1): Uint8Array {
  const labels = name.replace(/\.$/, "").split(".");
  const qname = labels.flatMap((l) => [l.length, ...new TextEncoder().encode(l)]);
  const msg = new Uint8Array(12 + qname.length + 1 + 4);
  const v = new DataView(msg.buffer);
  v.setUint16(0, id);
  v.setUint16(2, 0x0100);
  v.setUint16(4, 1);
  msg.set(qname, 12);
  v.setUint16(12 + qname.length + 1, qtype);
  v.setUint16(12 + qname.length + 3, 1);
  return msg;
}
