// The API client's types, derived from the generated `paths` of docs/openapi.json (types/api.d.ts):
// every `api.get/post/patch/put/del(path, ...)` call is matched against the documented operations
// of this app's end, so a call to an undocumented path, a body field the operation does not take or
// a response field the server does not send fails `tsc`. `AppEnd` is declared per app
// (types/app/<end>.d.ts): a shared file is checked once as each app.
import type { paths } from './api'

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete'

/** '/tasks/{task_id}/take' -> ['', 'tasks', '{task_id}', 'take'] */
type Split<S extends string> = S extends `${infer H}/${infer T}` ? [H, ...Split<T>] : [S]

/** Any text fits A: a segment built from a string (or an untyped value, `${any}`). */
type Wild<A extends string> = 'any segment' extends A ? true : false

/** A segment of a call's path (a literal, `${number}`, or a wild one) against one of a documented path. */
type SegmentMatches<A extends string, P extends string> = P extends `{${string}}`
  ? A extends '' ? false : true
  : Wild<A> extends true ? true : A extends P ? true : false

type AllMatch<A extends string[], P extends string[]> = A extends [infer AH extends string, ...infer AT extends string[]]
  ? P extends [infer PH extends string, ...infer PT extends string[]]
    ? SegmentMatches<AH, PH> extends true ? AllMatch<AT, PT> : false
    : false
  : P extends [] ? true : false

/** The documented paths of one end, relative to /api/v1/<end>, and the end-less ones (/api/v1/...). */
type EndPath<E extends string> = {
  [K in keyof paths]: K extends `/api/v1/${E}${infer R}` ? R : never
}[keyof paths]
type FullPath<E extends string, R extends string> = `/api/v1/${E}${R}` & keyof paths

/**
 * The documented operations of end E that a call to S with method M can be: S is relative to
 * /api/v1/<E> (as shared/api.js sends it), or a whole path (/api/v1/..., e.g. the other end's).
 */
export type Route<E extends string, S extends string, M extends Method> = S extends `/api/${string}`
  ? {
      [K in keyof paths & string]: AllMatch<Split<S>, Split<K>> extends true ? (paths[K] extends { [X in M]: {} } ? K : never) : never
    }[keyof paths & string]
  : {
      [R in EndPath<E>]: AllMatch<Split<S>, Split<R>> extends true
        ? paths[FullPath<E, R>] extends { [K in M]: {} } ? FullPath<E, R> : never
        : never
    }[EndPath<E>]

type Operation<K, M extends Method> = K extends keyof paths ? (paths[K] extends { [X in M]: infer O } ? O : never) : never

/** The JSON body of a 2xx answer (void for 204). */
type Success<O> = O extends { responses: infer R }
  ? {
      [C in keyof R]: C extends 200 | 201 | 202 | 204
        ? R[C] extends { content: { 'application/json': infer J } } ? J : void
        : never
    }[keyof R]
  : never

export type ResponseOf<S extends string, M extends Method> = Success<Operation<Route<AppEnd, S, M>, M>>

type BodyOf<O> = O extends { requestBody: { content: { 'application/json': infer B } } }
  ? B
  : O extends { requestBody?: { content: { 'application/json': infer B } } } ? B | undefined : undefined
type QueryOf<O> = O extends { parameters: { query?: infer Q } } ? ([Q] extends [never] ? undefined : Q) : undefined

export type RequestBody<S extends string, M extends Method> = BodyOf<Operation<Route<AppEnd, S, M>, M>>
export type RequestQuery<S extends string, M extends Method> = QueryOf<Operation<Route<AppEnd, S, M>, M>>

/** A path with no documented operation of this method: the argument's type names the problem. */
type Documented<S extends string, M extends Method> = [Route<AppEnd, S, M>] extends [never]
  ? `no ${Uppercase<M>} ${S} for this app in docs/openapi.json`
  : S

export interface Api {
  end: 'worker' | 'publisher'
  baseUrl: string
  get<const S extends string>(path: S & Documented<S, 'get'>, query?: RequestQuery<S, 'get'>): Promise<ResponseOf<S, 'get'>>
  post<const S extends string>(path: S & Documented<S, 'post'>, body?: RequestBody<S, 'post'>): Promise<ResponseOf<S, 'post'>>
  put<const S extends string>(path: S & Documented<S, 'put'>, body: RequestBody<S, 'put'>): Promise<ResponseOf<S, 'put'>>
  patch<const S extends string>(path: S & Documented<S, 'patch'>, body: RequestBody<S, 'patch'>): Promise<ResponseOf<S, 'patch'>>
  del<const S extends string>(path: S & Documented<S, 'delete'>): Promise<ResponseOf<S, 'delete'>>
}

/** A documented GET of this end that answers a page of items (a `*Page` schema: items + next_cursor). */
export type PagedPath = {
  [R in EndPath<AppEnd>]: R extends `${string}{${string}` ? never : ResponseOf<R, 'get'> extends { next_cursor: unknown; items: unknown[] } ? R : never
}[EndPath<AppEnd>]

export type Login = ResponseOf<'/login', 'post'>
export type Tokens = ResponseOf<'/refresh', 'post'>
export type Config = ResponseOf<'/config', 'get'>
export type Me = ResponseOf<'/me', 'get'>
export type Upload = ResponseOf<'/uploads', 'post'>

/** shared/api.js createApi(): the HTTP client of one app. */
export interface Api {
  end: 'worker' | 'publisher'
  baseUrl: string
  /** GET a documented path (relative to /api/v1/<end>); resolves with its documented answer. */
  get<const S extends string>(path: S & Documented<S, 'get'>, query?: RequestQuery<S, 'get'>): Promise<ResponseOf<S, 'get'>>
  post<const S extends string>(path: S & Documented<S, 'post'>, body?: RequestBody<S, 'post'>): Promise<ResponseOf<S, 'post'>>
  put<const S extends string>(path: S & Documented<S, 'put'>, body: RequestBody<S, 'put'>): Promise<ResponseOf<S, 'put'>>
  patch<const S extends string>(path: S & Documented<S, 'patch'>, body: RequestBody<S, 'patch'>): Promise<ResponseOf<S, 'patch'>>
  del<const S extends string>(path: S & Documented<S, 'delete'>): Promise<ResponseOf<S, 'delete'>>
  /** The untyped call under get/post/...: use those. */
  request(method: string, path: string, body?: unknown, opts?: { query?: object; noAuth?: boolean }): Promise<any>
  login(): Promise<Login>
  renew(): Promise<void>
  logout(): Promise<void>
  upload(filePath: string, onProgress?: (percent: number) => void): Promise<Upload>
  imageSrc(ref: string | null | undefined, signedUrl?: string | null): Promise<string>
  download(path: string): Promise<string>
  token(): string
  user(): Login['user'] | null
  setToken(value: string): void
  rememberInvite(scene: unknown): void
  wsUrl(): string
}

/** shared/context.js createContext(): what pages reach with getApp().ctx (shared/ui.js ctx()). */
export interface Ctx {
  end: 'worker' | 'publisher'
  clock: any
  config: Config | null
  banned: any
  api: Api
  live: any
  user: Login['user'] | null
  _ready: Promise<Ctx> | null
  clearBanned(): void
  logoutEverywhere(): Promise<void>
  start(launch: unknown): Promise<Ctx>
  ready(): Promise<Ctx>
  loadConfig(force?: boolean): Promise<Config>
  askSubscribe(events: string[]): Promise<unknown>
}
