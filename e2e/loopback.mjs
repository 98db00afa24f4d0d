// Preloaded (node --import) into MCP's server-everything for make e2e: its
// Streamable HTTP mode listens on PORT on every interface (Express's
// app.listen(PORT)), and the end-to-end run must stay on loopback. A listen
// call that names a port without a host gets 127.0.0.1.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const [first, second] = args;
  if ((typeof first === 'number' || /^\d+$/.test(first)) && typeof second !== 'string') {
    args.splice(1, 0, '127.0.0.1');
  } else if (first && typeof first === 'object' && first.path === undefined && first.host === undefined) {
    args[0] = { ...first, host: '127.0.0.1' };
  }
  return listen.apply(this, args);
};
