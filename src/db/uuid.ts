const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether a value can be compared with a uuid column; anything else would make PostgreSQL fail the query. */
export const isUuid = (value: string) => UUID.test(value);
