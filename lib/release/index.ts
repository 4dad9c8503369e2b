/** Signed releases: DSSE envelopes, trust sets, manifests, verification and artifact hashing. */
export * from "./errors.js";
export * from "./envelope.js";
export * from "./keys.js";
export * from "./semver.js";
export * from "./manifest.js";
export * from "./verify.js";
export * from "./artifact.js";
export * from "./sign.js";
