// Shared by the interop scripts: load age-encryption after making sure Web Crypto is global
// (Node 18, Debian 12's, has it only under node:crypto), and fail with one line, never a stack.
import { webcrypto } from "node:crypto";
import { readFileSync } from "node:fs";

if (!globalThis.crypto) {
  globalThis.crypto = webcrypto;
}

export const age = await import("age-encryption");

export function identities(path) {
  return readFileSync(path, "utf8")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith("#"));
}

export function run(usage, argc, main) {
  const args = process.argv.slice(2);
  if (args.length < argc) {
    process.stderr.write(`usage: ${usage}\n`);
    process.exit(2);
  }
  main(args).catch((err) => {
    process.stderr.write(`age-encryption: ${err && err.message ? err.message : err}\n`);
    process.exit(1);
  });
}
