/**
 * The connection's credential (wg-quick style text, delivered only to the
 * current holder) split into what `wg setconf` takes and what the agent
 * applies itself with `ip`: `Address` (and `MTU`) go on the interface,
 * everything else of [Interface] and [Peer] goes to `wg setconf`. Keys that
 * wg-quick would execute or apply to the host (PostUp, DNS, Table, ...) are
 * refused: the credential configures a tunnel, never the host. Error
 * messages name the line and key, never a value (the text holds the
 * private key).
 */
import { isCidr } from "./types.js";

/** What the data plane needs from a credential. */
export interface ParsedCredential {
  /** The text for `wg setconf` (the credential minus Address and MTU). */
  setconf: string;
  /** Interface addresses (CIDR). */
  addresses: string[];
  mtu?: number;
  /** Peer endpoint hosts (IP literals), kept out of the tunnel's routes. */
  endpointHosts: string[];
}

const INTERFACE_KEYS = new Set(["privatekey", "listenport", "fwmark"]);
const PEER_KEYS = new Set(["publickey", "presharedkey", "allowedips", "endpoint", "persistentkeepalive"]);
const MAX_BYTES = 64 * 1024;

function endpointHost(v: string): string | undefined {
  const m = /^\[([0-9a-fA-F:.]+)\]:\d+$/.exec(v) ?? /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(v);
  return m?.[1];
}

/** Parses the credential text; throws an Error naming the offending line (never its value). */
export function parseCredential(text: string): ParsedCredential {
  if (Buffer.byteLength(text, "utf8") > MAX_BYTES) throw new Error(`credential is larger than ${MAX_BYTES} bytes`);
  let section: "interface" | "peer" | undefined;
  const out: string[] = [];
  const addresses: string[] = [];
  const endpointHosts: string[] = [];
  let mtu: number | undefined;
  let privateKey = false;
  let peers = 0;
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = (lines[i] ?? "").replace(/#.*$/, "").trim();
    if (line === "") continue;
    const where = `credential line ${i + 1}`;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header !== null) {
      const name = (header[1] ?? "").toLowerCase();
      if (name === "interface") {
        if (section !== undefined) throw new Error(`${where}: [Interface] must come first and once`);
        section = "interface";
      } else if (name === "peer") {
        if (section === undefined) throw new Error(`${where}: [Peer] before [Interface]`);
        section = "peer";
        peers++;
      } else throw new Error(`${where}: unknown section`);
      out.push(`[${section === "interface" ? "Interface" : "Peer"}]`);
      continue;
    }
    const kv = /^([A-Za-z]+)\s*=\s*(.*)$/.exec(line);
    if (kv === null || section === undefined) throw new Error(`${where}: not a key = value line inside a section`);
    const key = (kv[1] ?? "").toLowerCase();
    const value = (kv[2] ?? "").trim();
    if (section === "interface" && key === "address") {
      for (const a of value.split(",").map((s) => s.trim())) {
        if (!isCidr(a)) throw new Error(`${where}: Address is not a list of CIDRs`);
        addresses.push(a);
      }
      continue;
    }
    if (section === "interface" && key === "mtu") {
      const n = Number(value);
      if (!/^\d+$/.test(value) || n < 576 || n > 65535) throw new Error(`${where}: MTU is not between 576 and 65535`);
      mtu = n;
      continue;
    }
    const allowed = section === "interface" ? INTERFACE_KEYS : PEER_KEYS;
    if (!allowed.has(key)) throw new Error(`${where}: key ${kv[1]} is not supported in [${section === "interface" ? "Interface" : "Peer"}] (the credential configures the tunnel only)`);
    if (key === "privatekey") privateKey = true;
    if (key === "endpoint") {
      const host = endpointHost(value);
      if (host === undefined) throw new Error(`${where}: Endpoint is not IP:port (host names are not resolved)`);
      endpointHosts.push(host);
    }
    out.push(`${kv[1]} = ${value}`);
  }
  if (!privateKey) throw new Error("credential has no [Interface] PrivateKey");
  if (addresses.length === 0) throw new Error("credential has no [Interface] Address");
  if (peers === 0) throw new Error("credential has no [Peer]");
  return { setconf: out.join("\n") + "\n", addresses, ...(mtu !== undefined ? { mtu } : {}), endpointHosts };
}
