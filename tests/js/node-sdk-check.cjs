// Drives @descope/node-sdk against a flask-logout server, as an integrating
// team would. Usage: node node-sdk-check.cjs <baseUrl> <projectId>
// Prints one JSON object: each step's outcome (status codes, error codes,
// user ids), never a token.
const DescopeClient = require('@descope/node-sdk').default || require('@descope/node-sdk');

const [baseUrl, projectId] = process.argv.slice(2);
const results = {};

const outcome = (resp) => ({ ok: resp.ok, code: resp.code, errorCode: resp.error ? resp.error.errorCode : null });
const failure = (err) => String(err && err.message ? err.message : err).includes('E064001') ? 'E064001' : 'refused';

async function main() {
  const sdk = DescopeClient({ projectId, baseUrl });
  const withKey = DescopeClient({ projectId, baseUrl, authManagementKey: 'K-not-a-real-key' });

  const signIn = await sdk.password.signIn('alice@example.com', 'wonderland');
  results.signIn = { ...outcome(signIn), userId: signIn.data.user.userId };
  const { sessionJwt, refreshJwt } = signIn.data;

  const validated = await sdk.validateSession(sessionJwt);
  results.validateSession = { sub: validated.token.sub, iss: validated.token.iss, drn: validated.token.drn };

  const refreshed = await sdk.refreshSession(refreshJwt);
  results.refreshSession = {
    sub: refreshed.token.sub,
    drn: refreshed.token.drn,
    newSession: refreshed.jwt !== sessionJwt,
    sameRefresh: refreshed.refreshJwt === refreshJwt,
  };

  const viaRefresh = await sdk.validateAndRefreshSession('not-a-session-jwt', refreshJwt);
  results.validateAndRefreshSession = { sub: viaRefresh.token.sub, newSession: viaRefresh.jwt !== sessionJwt };

  const me = await withKey.me(refreshJwt); // Bearer <pid>:<refresh>:<key>
  results.meWithAuthManagementKey = { ...outcome(me), email: me.data ? me.data.email : null };

  const logout = await sdk.logout(refreshJwt);
  results.logout = outcome(logout);
  try {
    await sdk.refreshSession(refreshJwt);
    results.refreshAfterLogout = 'accepted';
  } catch (err) {
    results.refreshAfterLogout = failure(err);
  }
  results.refreshAfterLogoutRaw = outcome(await sdk.refresh(refreshJwt));

  const laptop = (await sdk.password.signIn('alice@example.com', 'wonderland')).data;
  const phone = (await sdk.password.signIn('alice@example.com', 'wonderland')).data;
  results.logoutAll = outcome(await withKey.logoutAll(laptop.refreshJwt));
  results.phoneAfterLogoutAll = outcome(await sdk.refresh(phone.refreshJwt));
  try {
    await sdk.validateAndRefreshSession('not-a-session-jwt', phone.refreshJwt);
    results.phoneValidateAndRefresh = 'accepted';
  } catch (err) {
    results.phoneValidateAndRefresh = failure(err);
  }
}

main()
  .then(() => process.stdout.write(JSON.stringify(results)))
  .catch((err) => {
    process.stdout.write(JSON.stringify({ ...results, crashed: String(err && err.message ? err.message : err) }));
  });
