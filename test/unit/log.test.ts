/**
 * The process logger (lib/log.ts): one line per call, JSON or text, with an
 * Error field described by its message and cause (never its stack) in both
 * formats.
 */
import assert from "node:assert/strict";
import { logger, logFormat, setLogFormat, type LogFormat } from "../../lib/log.js";

/** The stderr lines `fn` writes under `format`. */
function linesOf(format: LogFormat, fn: () => void): string[] {
  const before = logFormat();
  const write = process.stderr.write.bind(process.stderr);
  let out = "";
  process.stderr.write = ((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  setLogFormat(format);
  try {
    fn();
  } finally {
    process.stderr.write = write;
    setLogFormat(before);
  }
  return out.split("\n").filter((l) => l !== "");
}

describe("logger", () => {
  const err = new Error("dialing postgres", { cause: new Error("connection refused") });

  it("writes a JSON line with the error's message and cause, and no stack", () => {
    const [line, ...rest] = linesOf("json", () => logger("test", { part: "x" }).warn("it failed", { err, node: "n1" }));
    assert.deepEqual(rest, []);
    const o = JSON.parse(line ?? "") as Record<string, unknown>;
    assert.equal(o.level, "warn");
    assert.equal(o.msg, "it failed");
    assert.equal(o.part, "x");
    assert.equal(o.node, "n1");
    assert.deepEqual(o.err, { message: "dialing postgres", cause: { message: "connection refused" } });
    assert.doesNotMatch(line ?? "", /\bat /);
  });

  it("writes a text line whose fields carry the error's message and cause too", () => {
    const [line, ...rest] = linesOf("text", () => logger("test").error("it failed", { err }));
    assert.deepEqual(rest, []);
    assert.match(line ?? "", /^\S+Z ERROR \[test\] it failed \{"err":\{"message":"dialing postgres","cause":\{"message":"connection refused"\}\}\}$/);
  });
});
