/**
 * Repository of the agent_api_ca table (migrations/013_agent_api_ca.sql):
 * the one agent API certificate authority of a database, shared by every
 * control-plane process on it. The private key is stored sealed under the
 * KEK (lib/crypto/kek.ts), bound to the row by the CA hash. Not a fenced
 * decision: any process may be the first to start, and the first insert
 * wins (the others read it back).
 */
import type pg from "pg";
import type { Sealed } from "../crypto/kek.js";
import { firstRow } from "./table.js";

/** The stored CA. */
export interface AgentApiCaRow {
  certPem: string;
  /** sha256:<hex> of the CA's SubjectPublicKeyInfo (--ca-hash). */
  caHash: string;
  sealed: Sealed;
  origin: "generated" | "imported";
  createdBy: string;
  createdAt?: Date;
}

/** Additional data binding the sealed CA key to its row (see lib/crypto/kek.ts). */
export function agentApiCaAad(caHash: string): string {
  return `accessfabric.io/agent-api-ca/v1|${caHash}`;
}

interface DbRow {
  cert_pem: string;
  ca_hash: string;
  kek_id: string;
  nonce: Buffer;
  ciphertext: Buffer;
  origin: "generated" | "imported";
  created_by: string;
  created_at: Date;
}

function fromDb(r: DbRow): AgentApiCaRow {
  return { certPem: r.cert_pem, caHash: r.ca_hash, sealed: { kekId: r.kek_id, nonce: r.nonce, ciphertext: r.ciphertext }, origin: r.origin, createdBy: r.created_by, createdAt: r.created_at };
}

/** See the module comment. */
export class AgentApiCaStore {
  constructor(private readonly pool: pg.Pool) {}

  /** The stored CA, if any. */
  async get(): Promise<AgentApiCaRow | undefined> {
    return firstRow(this.pool, "SELECT cert_pem, ca_hash, kek_id, nonce, ciphertext, origin, created_by, created_at FROM agent_api_ca WHERE id = 1", [], fromDb);
  }

  /**
   * Stores `row` unless a CA is stored already; returns the stored CA either
   * way, and whether it is `row` (race-safe: ON CONFLICT DO NOTHING, then the
   * row that won is read back).
   */
  async insertIfAbsent(row: AgentApiCaRow): Promise<{ row: AgentApiCaRow; inserted: boolean }> {
    const res = await this.pool.query(
      `INSERT INTO agent_api_ca (id, cert_pem, ca_hash, kek_id, nonce, ciphertext, origin, created_by)
       VALUES (1, $1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING`,
      [row.certPem, row.caHash, row.sealed.kekId, row.sealed.nonce, row.sealed.ciphertext, row.origin, row.createdBy],
    );
    const stored = await this.get();
    if (stored === undefined) throw new Error("agent_api_ca: no row after insert");
    return { row: stored, inserted: (res.rowCount ?? 0) > 0 };
  }
}
