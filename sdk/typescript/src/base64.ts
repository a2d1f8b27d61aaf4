// Base64 with the `btoa` and `atob` that Bun and Node 20 both have, so the SDK needs no Buffer.

/** Base64 of `bytes`, as `file.write` with `encoding: "base64"` takes it. */
export function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  // fromCharCode takes its codes as arguments; chunks keep the argument count well below engines' limits.
  const chunk = 0x8000;
  for (let start = 0; start < bytes.length; start += chunk) {
    binary += String.fromCharCode(...bytes.subarray(start, start + chunk));
  }
  return btoa(binary);
}

/** The bytes of base64 `text`, as `file.read` with `encoding: "base64"` answers them. */
export function decodeBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let index = 0; index < binary.length; index++) bytes[index] = binary.charCodeAt(index);
  return bytes;
}
