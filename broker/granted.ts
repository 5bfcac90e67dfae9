// What authorizeSubscribe decided for each filter of a SUBSCRIBE. Aedes hands the persistence the
// packet's whole list of filters once per granted filter (handlers/subscribe.js,
// storeSubscriptions), refused ones and those not decided yet included: the session must not keep a
// refused one (a refused `$share/…` filter would make the client a member of that group at the next
// start). One decided later is dropped from the session when refused (authorization.ts).
const decided = new WeakMap<object, number | 'refused'>();

/** authorizeSubscribe granted `sub` (an entry of the SUBSCRIBE's list) at `qos`. */
export const grant = (sub: object, qos: number): void => void decided.set(sub, qos);

/** authorizeSubscribe refused `sub`. */
export const refuse = (sub: object): void => void decided.set(sub, 'refused');

/** What was decided for `sub`: the QoS granted, 'refused', or undefined (not yet, or not through authorizeSubscribe). */
export const decision = (sub: object): number | 'refused' | undefined => decided.get(sub);
