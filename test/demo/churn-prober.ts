// Keeps connection entries in the churn test's virtual services, run in a client netns:
//   node churn-prober.js <interval ms> <clusterIP>...
// Every interval it opens a connection to a random ClusterIP (port 80) and drops it after 1.5 s. No pod answers
// (the pod addresses lead to a dummy interface), so each attempt leaves an IPVS entry in SYN_RECV for a minute:
// the inactive connections that keep kube-proxy from deleting a weight-0 real server at once, as real traffic does.
import { connect } from 'node:net';

const [interval = '100', ...targets] = process.argv.slice(2);
setInterval(() => {
  const host = targets[Math.floor(Math.random() * targets.length)]!;
  const socket = connect({ host, port: 80 });
  socket.on('error', () => undefined);
  setTimeout(() => socket.destroy(), 1500);
}, Number(interval));
