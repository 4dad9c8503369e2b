import assert from "node:assert/strict";
import { describe, it } from "mocha";
import { MESH_ALPN, meshQuicConfig } from "../../agent/mesh/transport/quic-config.js";

describe("mesh QUIC options", () => {
  it("asks no QUIC keepalive when the mesh's own probes are more frequent than it would be", () => {
    const c = meshQuicConfig(10_000, 2500);
    assert.equal(c.maxIdleTimeout, 10_000);
    assert.equal(c.keepAliveIntervalTime, undefined);
    assert.deepEqual(c.applicationProtos, [MESH_ALPN]);
    assert.equal(meshQuicConfig(10_000, 3333).keepAliveIntervalTime, undefined);
  });

  it("keeps a QUIC keepalive of a third of the idle timeout when probes are slower", () => {
    assert.equal(meshQuicConfig(10_000, 5000).keepAliveIntervalTime, 3333);
    assert.equal(meshQuicConfig(1500, 60_000).keepAliveIntervalTime, 1000);
  });
});
