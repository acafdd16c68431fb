// node keys.mjs recipient IDENTITY_FILE: print each identity's recipient, one a line.
// node keys.mjs generate-hybrid: print a fresh AGE-SECRET-KEY-PQ-1 identity, then its recipient.
import { age, identities, run } from "./common.mjs";

run("keys.mjs (recipient IDENTITY_FILE | generate-hybrid)", 1, async ([command, identityFile]) => {
  if (command === "generate-hybrid") {
    const identity = await age.generateHybridIdentity();
    process.stdout.write(`${identity}\n${await age.identityToRecipient(identity)}\n`);
  } else if (command === "recipient" && identityFile) {
    for (const identity of identities(identityFile)) {
      process.stdout.write(`${await age.identityToRecipient(identity)}\n`);
    }
  } else {
    throw new Error(`unknown command ${command}`);
  }
});
