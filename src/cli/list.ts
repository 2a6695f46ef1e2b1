// `ipvs-janitor list`: the kernel's IPVS table, as `ipvsadm -Ln` shows it, or as JSON.
import { IpvsClient } from '../ipvs/client.js';
import { formatTable, readTable } from '../ipvs/table.js';

export async function list(json: boolean): Promise<void> {
  const client = await IpvsClient.open();
  try {
    const table = await readTable(client);
    process.stdout.write(
      json
        ? `${JSON.stringify(table, (_, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`
        : formatTable(table),
    );
  } finally {
    client.close();
  }
}
