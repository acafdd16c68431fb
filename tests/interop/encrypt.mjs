// node encrypt.mjs IN OUT RECIPIENT...: encrypt a file to age recipients with age-encryption.
import { readFileSync, writeFileSync } from "node:fs";
import { age, run } from "./common.mjs";

run("encrypt.mjs IN OUT RECIPIENT...", 3, async ([input, output, ...recipients]) => {
  const e = new age.Encrypter();
  for (const recipient of recipients) {
    e.addRecipient(recipient);
  }
  writeFileSync(output, await e.encrypt(new Uint8Array(readFileSync(input))));
});
