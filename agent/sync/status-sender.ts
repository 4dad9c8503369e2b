/**
 * The mTLS send of one membership's versioned status reports
 * (POST /v1/status/<kind>), following certificate renewals: the identity is
 * re-read from the membership directory when the server says the
 * certificate was superseded (the renewal loop wrote a new one). Shared by
 * the workload reporter (kind `workloads`) and the mesh loop (kind `mesh`).
 */
import type { StatusReport } from "../../lib/agent-protocol.js";
import { AgentApiRequestError } from "../http/client.js";
import { loadIdentity, type StoredIdentity } from "../enroll/identity-store.js";
import { SyncTransport } from "./transport.js";

/** A status sender: `send` posts one report, `close` releases its connections. */
export interface StatusSender {
  send: (r: StatusReport) => Promise<void>;
  close: () => void;
}

/** The send of status reports of `kind` for the membership in `dir`. */
export function statusSender(dir: string, initial: StoredIdentity | undefined, kind: string): StatusSender {
  let identity = initial;
  let transport: SyncTransport | undefined;
  const current = async (): Promise<SyncTransport> => {
    if (identity === undefined) identity = await loadIdentity(dir);
    transport ??= new SyncTransport(identity);
    return transport;
  };
  const reload = async (): Promise<void> => {
    const fresh = await loadIdentity(dir);
    if (identity !== undefined && fresh.info.serial === identity.info.serial) return;
    identity = fresh;
    transport?.close();
    transport = undefined;
  };
  return {
    async send(r) {
      const t = await current();
      try {
        await t.postJson<unknown>(`/v1/status/${kind}`, r);
      } catch (err) {
        if (err instanceof AgentApiRequestError && err.code === "CertificateSuperseded") await reload();
        throw err;
      }
    },
    close() {
      transport?.close();
      transport = undefined;
    },
  };
}
