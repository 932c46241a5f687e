#!/usr/bin/env python3
# EXPERIMENT (issue 27 bf16 gate; reverted in the next commit). Run in a directory holding
# the vectors examples/local_embed_bench.rs --write-vectors wrote for each RAGD_BERT_SIM
# variant (ref-*, bench-*, q-*), sentence-transformers' (bench-st, q-st) and the reference.
import json, numpy as np
L=lambda f: np.array(json.load(open(f)),dtype=np.float64)
def n(a): return a/np.linalg.norm(a,axis=1,keepdims=True)
ref=n(L('ref-vectors.json')); bst=n(L('bench-st.json')); qst=n(L('q-st.json'))
boff=n(L('bench-off.json')); qoff=n(L('q-off.json'))
def topk(q,c,k=10,self_ex=False):
    s=q@c.T
    if self_ex: np.fill_diagonal(s,-9)
    return np.argsort(-s,axis=1,kind='stable')[:,:k], s
def cmp(q,c,qb,cb,self_ex):
    ta,sa=topk(q,c,self_ex=self_ex); tb,sb=topk(qb,cb,self_ex=self_ex)
    same_order=sum((a==b).all() for a,b in zip(ta,tb)); same_set=sum(set(a)==set(b) for a,b in zip(ta,tb))
    top1=sum(a[0]==b[0] for a,b in zip(ta,tb))
    return same_order, same_set, top1, len(ta)
print("variant  ref-min  bench-min-vs-f32  bench-min-vs-ST | chunk->chunk top10 order/set/top1 | query->chunk order/set/top1")
for v in ['off','ffn','dense','all','weights','st']:
    if v=='st': r=ref; b=bst; q=qst
    else: r=n(L(f'ref-{v}.json')); b=n(L(f'bench-{v}.json')); q=n(L(f'q-{v}.json'))
    cr=(r*ref).sum(1).min(); cb=(b*boff).sum(1).min(); cs=(b*bst).sum(1).min()
    c1=cmp(boff,boff,b,b,True); c2=cmp(qoff,boff,q,b,False)
    print(f"{v:8} {cr:.7f} {cb:.7f} {cs:.7f} | {c1} | {c2}")
import json, numpy as np
L=lambda f: np.array(json.load(open(f)),dtype=np.float64)
def n(a): return a/np.linalg.norm(a,axis=1,keepdims=True)
boff=n(L('bench-off.json')); qoff=n(L('q-off.json'))
# smallest adjacent gap in the f32 top-11 over all queries (how close ties are)
for v in ['ffn','dense','all','weights']:
    b=n(L(f'bench-{v}.json')); q=n(L(f'q-{v}.json'))
    for name,(Q,C,Qb,Cb,ex) in {'chunk':(boff,boff,b,b,True),'query':(qoff,boff,q,b,False)}.items():
        s=Q@C.T; sb=Qb@Cb.T
        if ex: np.fill_diagonal(s,-9); np.fill_diagonal(sb,-9)
        gaps=[]; deep=[]
        for i in range(len(s)):
            a=np.argsort(-s[i],kind='stable')[:10]; bb=np.argsort(-sb[i],kind='stable')[:10]
            if set(a)!=set(bb):
                out=set(a)-set(bb); inn=set(bb)-set(a)
                ra=[list(np.argsort(-s[i],kind='stable')).index(j)+1 for j in inn]
                gaps.append(max(s[i][list(out)].max()-s[i][list(inn)].min(), abs(s[i][list(out)].min()-s[i][list(inn)].max())))
                deep.append((i, sorted(ra), float(s[i][a[9]]-s[i][list(inn)].max())))
            
        maxdelta=np.abs(s-sb)[s>-9].max()
        print(v,name,'set changes',len(deep),'entering f32 ranks/score gap',[(d[1],round(d[2],6)) for d in deep],'max |score delta|',round(maxdelta,6))

s=boff@boff.T; np.fill_diagonal(s,-9)
srt=-np.sort(-s,axis=1); g=srt[:,9]-srt[:,10]
print('f32 rank10-11 gap: min %.2e median %.2e; queries with gap<1e-3: %d/177'%(g.min(),np.median(g),(g<1e-3).sum()))
m=~np.eye(177,dtype=bool)
for v in ['st','ffn','dense','all','weights']:
    b=bst if v=='st' else n(L(f'bench-{v}.json'))
    d=(b@b.T-boff@boff.T)[m]
    print(v,'score delta rms %.1e max %.1e'%(np.sqrt((d**2).mean()),np.abs(d).max()))
