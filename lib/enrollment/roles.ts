/**
 * Which capabilities a role needs. Capabilities are what a host can do
 * (reported by its agent); roles are what it is allowed to run. A requested
 * role whose capabilities the host does not report is flagged before anyone
 * approves, and auto-approval never grants it. Roles not listed here need no
 * particular capability.
 */

/** Required capabilities per role (all of them). */
export const ROLE_REQUIREMENTS: Readonly<Record<string, readonly string[]>> = {
  "entry-node": ["can_accept_client_ingress"],
  "relay-node": ["can_route_mesh", "can_accept_node_ingress"],
  "core-node": ["can_route_mesh", "can_accept_node_ingress"],
  "rdp-worker": ["can_run_rdp_worker"],
  "vnc-worker": ["can_run_vnc_worker"],
  "vpn-exit": ["can_run_vpn_exit", "can_egress_internet"],
  "vpn-connector": ["can_run_vpn_connector", "can_egress_private_network"],
  "file-storage-cache": ["can_run_file_cache"],
  "update-cache": ["can_run_update_cache"],
  "video-relay": ["can_run_video_relay"],
};

/** Requested roles the capabilities cannot support, sorted. */
export function unsupportedRoles(requested: readonly string[], capabilities: readonly string[]): string[] {
  const have = new Set(capabilities);
  return requested.filter((r) => (ROLE_REQUIREMENTS[r] ?? []).some((c) => !have.has(c))).sort();
}

/** Capabilities each unsupported role is missing, for messages. */
export function missingCapabilities(requested: readonly string[], capabilities: readonly string[]): Record<string, string[]> {
  const have = new Set(capabilities);
  const out: Record<string, string[]> = {};
  for (const r of requested) {
    const missing = (ROLE_REQUIREMENTS[r] ?? []).filter((c) => !have.has(c));
    if (missing.length > 0) out[r] = missing;
  }
  return out;
}
